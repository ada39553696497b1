"""Saving and loading model objects.

Three flavors:

- ``sklearn``: scikit-learn estimators and pipelines, saved with skops. skops loading
  never runs arbitrary code; it instantiates only types it trusts. Types outside skops'
  default trusted set are listed at registration and stored in the manifest; on load they
  are trusted because the file's sha256 matched the registry, so the registry (and who
  may write to it) is the root of trust. A file that asks for any other type is refused.
- ``python``: any picklable Python object, saved with cloudpickle. Loading a pickle runs
  code chosen by whoever wrote it: load only from registries whose writers you trust.
  Digest checks guard against tampering in the artifact store, not a hostile registrant.
- ``files``: a file or folder registered as-is; ``load()`` returns the verified local path.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

from .errors import ArtifactMissing, FlavorError, InvalidArgument

FLAVORS = ("sklearn", "python", "files")


def detect(obj: Any) -> str:
    """The flavor for an object: paths are files, estimators sklearn, the rest python."""
    if isinstance(obj, str | Path):
        return "files"
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return "python"
    return "sklearn" if isinstance(obj, BaseEstimator) else "python"


def describe(obj: Any, flavor: str) -> tuple[str | None, str | None]:
    """(framework, algorithm) for the registry row."""
    if flavor == "files":
        return None, None
    algorithm = type(obj).__name__
    steps = getattr(obj, "steps", None)
    if flavor == "sklearn" and isinstance(steps, list):
        algorithm = "Pipeline(" + " > ".join(type(s[1]).__name__ for s in steps) + ")"
    module = type(obj).__module__.split(".")[0]
    framework = "scikit-learn" if module == "sklearn" else module
    return framework, algorithm


def save(obj: Any, flavor: str, dest: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write ``obj`` under ``dest``; returns ({relative name: path}, manifest extras)."""
    if flavor not in FLAVORS:
        raise InvalidArgument(f"unknown flavor {flavor!r}; use one of {', '.join(FLAVORS)}")
    extra: dict[str, Any] = {"flavor": flavor, "python": platform.python_version()}
    if flavor == "files":
        src = Path(obj).expanduser()
        if not src.exists():
            raise ArtifactMissing(f"artifact path {str(src)!r} does not exist")
        if src.is_file():
            return {f"files/{src.name}": src}, {**extra, "entry": f"files/{src.name}"}
        found = {f"files/{p.relative_to(src).as_posix()}": p for p in src.rglob("*") if p.is_file()}
        if not found:
            raise ArtifactMissing(f"artifact folder {str(src)!r} holds no files")
        return found, {**extra, "entry": "files"}
    if flavor == "sklearn":
        import skops
        import skops.io as sio

        path = dest / "model.skops"
        try:
            sio.dump(obj, path)
            untrusted = sorted(sio.get_untrusted_types(file=path))
        except Exception as e:
            raise FlavorError(
                f"skops could not save {type(obj).__name__}: {e}. Register it with "
                "flavor='python' (cloudpickle) instead"
            ) from e
        # skops writes some objects it then refuses to read (an attribute it cannot
        # rebuild): a version that can never load is refused now, with the reason.
        try:
            sio.load(path, trusted=untrusted)
        except Exception as e:
            raise FlavorError(
                f"skops saved {type(obj).__name__} but cannot load it back ({e}). Remove or "
                "convert the attribute it names, or register with flavor='python' "
                "(cloudpickle) instead"
            ) from e
        extra.update(skops=skops.__version__, trusted_types=untrusted)
        return {"model.skops": path}, extra
    import cloudpickle

    path = dest / "model.pkl"
    try:
        with open(path, "wb") as fh:
            cloudpickle.dump(obj, fh)
    except Exception as e:
        raise FlavorError(f"cloudpickle could not save {type(obj).__name__}: {e}") from e
    extra.update(cloudpickle=cloudpickle.__version__)
    return {"model.pkl": path}, extra


def load(manifest: dict[str, Any], folder: Path) -> Any:
    """Deserialize a model from verified files in ``folder``."""
    flavor = manifest.get("flavor")
    if flavor == "files":
        entry = folder / str(manifest["entry"])
        return entry
    if flavor == "sklearn":
        import skops.io as sio

        try:
            return sio.load(folder / "model.skops", trusted=list(manifest.get("trusted_types", [])))
        except Exception as e:
            raise FlavorError(f"skops could not load the model: {e}") from e
    if flavor == "python":
        import cloudpickle

        try:
            with open(folder / "model.pkl", "rb") as fh:
                return cloudpickle.load(fh)
        except Exception as e:
            raise FlavorError(
                f"could not unpickle the model ({e}); it was saved with Python "
                f"{manifest.get('python')} and cloudpickle {manifest.get('cloudpickle')}"
            ) from e
    raise FlavorError(f"unknown flavor {flavor!r} in manifest; upgrade mlops-nb")


def copy_tree(src: Path, dest: Path) -> None:
    """Copy a verified artifact folder somewhere the user chose."""
    shutil.copytree(src, dest, dirs_exist_ok=True)
