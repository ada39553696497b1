"""``python -m mlops_nb.kube.fetch``: the init container that brings the artifact into the pod.

It copies every file of the version's manifest from the artifact store (S3, or a mounted
volume with ``--from``) into a local store under ``--into``, verifying each file's sha256
and the manifest digest, and writes the server's spec pointing at that local copy. A
missing or tampered file fails the pod before the server starts, with the reason in the
container's log and ``lastState.terminated``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from ..artifacts import manifest_digest, open_store
from ..errors import ArtifactError
from ..serve.spec import ServeSpec


def fetch(spec: ServeSpec, into: Path, source: str | None = None) -> ServeSpec:
    """Copy and verify the artifact of ``spec`` into ``into``; the spec that serves from there."""
    if manifest_digest(spec.manifest) != spec.digest:
        raise ArtifactError(f"the spec's manifest does not match digest {spec.digest}")
    src = open_store(source or spec.artifact_uri, spec.s3_options)
    local = open_store(str(into))
    with tempfile.TemporaryDirectory(prefix="mlops-nb-fetch-", dir=into.parent) as tmp:
        files = src.fetch(spec.manifest, spec.digest, Path(tmp))  # verifies every file
        roles = {f["path"]: f.get("role", "model") for f in spec.manifest["files"]}
        extra = {k: v for k, v in spec.manifest.items() if k not in ("format", "files")}
        got = local.put_files({rel: Path(tmp) / rel for rel in roles}, roles=roles, extra=extra)
    if manifest_digest(got) != spec.digest:
        raise ArtifactError(f"copied files give digest {manifest_digest(got)}, not {spec.digest}")
    del files
    return dataclasses.replace(spec, artifact_uri=str(into), s3_options=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_nb.kube.fetch")
    parser.add_argument("--spec", required=True, help="ServeSpec JSON (from the ConfigMap)")
    parser.add_argument("--into", required=True, help="folder for the verified local copy")
    parser.add_argument("--write-spec", required=True, help="where the server's spec goes")
    parser.add_argument("--from", dest="source", help="a mounted artifact store to read instead")
    args = parser.parse_args(argv)
    into = Path(args.into)
    into.mkdir(parents=True, exist_ok=True)
    try:
        served = fetch(ServeSpec.read(args.spec), into, args.source)
    except ArtifactError as e:
        print(f"mlops-nb fetch: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    served.write(Path(args.write_spec))
    print(f"mlops-nb fetch: {served.model} v{served.version} {served.digest} verified", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
