"""``traffic="gateway-api"``: a canary's HTTPRoute weights split real requests.

The emulator plays the Gateway controller and its data plane (see
``mlops_nb.kube.emulator.gateway``); the pods are real model servers, and clients call the
deployment's endpoint, which is the Gateway's address and the deployment's path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s_client

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes
from mlops_nb.kube.emulator import Emulator
from mlops_nb.kube.routing import gateway_url

from ..deploy.conftest import wait_for
from .conftest import body

GROUP, VERSION = "gateway.networking.k8s.io", "v1"


def _gateway(kubeconfig: Any, ns: str = "ml", name: str = "public") -> dict[str, Any]:
    """Create a Gateway as a platform team would (the SDK never creates one)."""
    from kubernetes import config

    api = config.new_client_from_config(str(kubeconfig))
    gw = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gateway",
          "metadata": {"name": name, "namespace": ns},
          "spec": {"gatewayClassName": "emulated",
                   "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}}  # fmt: skip
    custom = k8s_client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "gateways", gw)
    return custom  # type: ignore[no-any-return]


def _versions(url: str, X: Any, n: int) -> Counter[str]:
    with httpx.Client(timeout=30) as http:
        answers = [http.post(url, json=body(X)) for _ in range(n)]
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers[:3]]
    return Counter(r.json()["model_version"] for r in answers)


def test_canary_weights_on_an_httproute_split_requests_through_the_gateway(
    emulator: Emulator, kubeconfig: Any, models: dict[str, mnb.ModelVersion], iris_data: Any
) -> None:
    X, _ = iris_data
    k8s = Kubernetes(namespace="ml", image="mlops-nb:test", kubeconfig=str(kubeconfig),
                     traffic="gateway-api", gateway="ml/public")  # fmt: skip
    with pytest.raises(mnb.ClusterNotFound, match="Gateway ml/public does not exist"):
        models["v1"].deploy(target=k8s, replicas=1, timeout=180)
    custom = _gateway(kubeconfig)
    wait_for(
        lambda: (
            custom.get_namespaced_custom_object(GROUP, VERSION, "ml", "gateways", "public")
            .get("status", {})
            .get("addresses")
        ),
        60,
        "the Gateway's address",
    )
    dep = models["v1"].deploy(target=k8s, replicas=1, timeout=180)
    gw = custom.get_namespaced_custom_object(GROUP, VERSION, "ml", "gateways", "public")
    assert dep.endpoint == f"{gateway_url(gw)}/ml/iris"
    url = dep.endpoint + "/v2/models/iris/infer"
    assert _versions(url, X, 4) == {"1": 4}
    # A long pause holds the canary at its first step.
    models["v2"].deploy(target=k8s, strategy=mnb.Canary(steps=[25, 100], pause="1h"), timeout=180)
    wait_for(lambda: dep.status()["traffic"] == {1: 75.0, 2: 25.0}, 180, "the canary's first step")

    def weights() -> dict[str, int]:
        route = custom.get_namespaced_custom_object(GROUP, VERSION, "ml", "httproutes", "iris")
        return {r["name"]: r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]}

    # The step is recorded before the controller applies it to the route: wait for both.
    wait_for(lambda: weights() == {"iris-r1": 75, "iris-r2": 25}, 60, "the route's weights")
    wait_for(
        lambda: route_accepted_in(custom, "ml", "iris"), 60, "the HTTPRoute accepted by its Gateway"
    )
    # Weighted round-robin: every four requests, three to the stable version.
    assert _versions(url, X, 40) == {"1": 30, "2": 10}
    dep.promote()
    wait_for(lambda: dep.status()["traffic"] == {2: 100.0}, 180, "the promotion")
    wait_for(lambda: (w := weights()).get("iris-r2") == sum(w.values()) > 0, 60,
             "the route's weights after the promotion")  # fmt: skip
    assert _versions(url, X, 8) == {"2": 8}
    # A path no route claims is the Gateway's 404, not another deployment's answer.
    assert httpx.get(f"{gateway_url(gw)}/elsewhere/v2/health/ready", timeout=30).status_code == 404
    dep.delete()
    wait_for(lambda: not emulator.kubelet.runs, 60, "pods stopped")


def test_gateway_url_from_status_addresses() -> None:
    listeners = {"listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}]}
    assert gateway_url({"spec": listeners}) is None
    assert gateway_url({"spec": listeners, "status": {"addresses": [
        {"type": "IPAddress", "value": "203.0.113.7"}]}}) == "http://203.0.113.7:8080"  # fmt: skip
    tls = {"listeners": [{"name": "tls", "protocol": "HTTPS", "port": 443}]}
    assert gateway_url({"spec": tls, "status": {"addresses": [
        {"type": "Hostname", "value": "models.example.com"}]}}) == "https://models.example.com"  # fmt: skip
    assert gateway_url({"spec": {}, "status": {"addresses": [
        {"type": "IPAddress", "value": "2001:db8::1"}]}}) == "http://[2001:db8::1]"  # fmt: skip


def test_a_gateway_takes_routes_of_other_namespaces_only_when_its_listener_allows(
    emulator: Emulator, kubeconfig: Any
) -> None:
    custom = _gateway(kubeconfig)
    route = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HTTPRoute",
             "metadata": {"name": "other", "namespace": "default"},
             "spec": {"parentRefs": [{"name": "public", "namespace": "ml"}],
                      "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/default/other"}}],
                                 "backendRefs": [{"name": "nothing", "port": 80, "weight": 0}]}]}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", "httproutes", route)
    url = f"{emulator.url}/gateways/ml/public/default/other/v2/health/ready"
    emulator.step()
    # Listeners take routes of their own namespace unless they say otherwise: no route here.
    assert httpx.get(url, timeout=30).status_code == 404
    assert not route_accepted_in(custom, "default", "other")
    custom.patch_namespaced_custom_object(GROUP, VERSION, "ml", "gateways", "public", {
        "spec": {"listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]}})  # fmt: skip
    emulator.step()
    wait_for(lambda: route_accepted_in(custom, "default", "other"), 60, "the route accepted")
    # Now the route matches; its only backend has weight 0, which Gateway API answers 500.
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 500 and "weight above 0" in answer.text


def route_accepted_in(custom: Any, ns: str, name: str) -> bool:
    route = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "httproutes", name)
    parents = (route.get("status") or {}).get("parents") or []
    return any(c["type"] == "Accepted" and c["status"] == "True" for p in parents
               for c in p["conditions"])  # fmt: skip
