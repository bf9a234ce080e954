"""Helm and Kubernetes manifest checks for tests/chart.rs and
tests/docs_examples.rs, with no helm binary and no cluster.

Helm runs in-process through helm-python-sdk (Helm's own Go SDK behind a C
ABI); manifests are checked with kubernetes-validate (the upstream OpenAPI
schemas per Kubernetes version, strict: unknown fields are errors). Each
command prints one JSON object on stdout and exits 0 unless the command
itself could not run; the Rust tests do the asserting.

  helm_render.py lint CHART KUBE_VERSION [VALUES_JSON]
      {"messages": [{"severity", "path", "error"}], "errors": [...]}
      (severity 1 info, 2 warning, 3 error; --strict fails on >= 2)
  helm_render.py render CHART RELEASE NAMESPACE KUBE_VERSIONS [VALUES_JSON]
      {"objects": [{"template", "object", "validation": {VERSION: RESULT}}],
       "crds": [...same...], "notes": "..."}
      KUBE_VERSIONS is comma-separated ("latest": the newest Kubernetes
      kubernetes-validate knows); RESULT is "ok", "no-schema: ..."
      (kind unknown to kubernetes-validate) or "invalid: PATH: MESSAGE".
  helm_render.py schema CHART VALUES_JSON
      {"ok": bool, "error": "..."}  (values.schema.json, as install checks)
  helm_render.py validate KUBE_VERSIONS < FILE.yaml
      {"objects": [{"object", "validation": {...}}]}  (every YAML document)
"""

import json
import sys

import yaml


def kube_validate(obj, versions):
    import kubernetes_validate
    import kubernetes_validate.utils
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    results = {}
    for version in versions:
        if version == "latest":
            version = kubernetes_validate.utils.latest_version()
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            results[version] = "ok"
        except SchemaNotFoundError as e:
            results[version] = f"no-schema: {e.message}"
        except ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            results[version] = f"invalid: {path}: {e.message}"
    return results


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def values_arg(argv, i):
    return json.loads(argv[i]) if len(argv) > i else None


def lint(argv):
    import helm_python as helm

    chart, kube_version = argv[2], argv[3]
    report = helm.lint(chart, values_arg(argv, 4), strict=True, kube_version=kube_version)
    return {"messages": report.get("messages") or [], "errors": report.get("errors") or []}


def render(argv):
    import helm_python as helm

    chart_dir, release, namespace = argv[2], argv[3], argv[4]
    versions = argv[5].split(",")
    values = values_arg(argv, 6)
    out = {"objects": [], "crds": [], "notes": ""}
    with helm.Chart.load(chart_dir) as chart:
        # An install validates the values first; so does this.
        chart.validate_schema(values)
        manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
        for template, text in sorted(manifests.items()):
            if template.endswith("NOTES.txt"):
                out["notes"] = text
                continue
            for obj in documents(text):
                out["objects"].append(
                    {"template": template, "object": obj, "validation": kube_validate(obj, versions)}
                )
        for crd in chart.crds:
            for obj in documents(crd["data"]):
                out["crds"].append(
                    {
                        "template": crd["filename"],
                        "object": obj,
                        "validation": kube_validate(obj, versions),
                    }
                )
    return out


def schema(argv):
    import helm_python as helm

    with helm.Chart.load(argv[2]) as chart:
        try:
            chart.validate_schema(json.loads(argv[3]))
            return {"ok": True, "error": ""}
        except helm.HelmValuesError as e:
            return {"ok": False, "error": str(e)}


def validate(argv):
    versions = argv[2].split(",")
    return {
        "objects": [
            {"object": obj, "validation": kube_validate(obj, versions)}
            for obj in documents(sys.stdin.read())
        ]
    }


COMMANDS = {"lint": lint, "render": render, "schema": schema, "validate": validate}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    json.dump(COMMANDS[sys.argv[1]](sys.argv), sys.stdout)
    sys.stdout.write("\n")
