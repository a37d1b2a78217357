"""The checks behind scripts/k8s-check (run it, not this file: it renders the overlays
and runs this in the venv that has kubernetes-validate).

Every object the overlays render is validated against the Kubernetes API's JSON schemas
(kubernetes-validate, strict: unknown fields are errors) or, for the operators' kinds,
against the schemas kept in deploy/kubernetes/schemas/. Then the properties a schema
cannot see: pods that can read their Secrets (the uid/fsGroup bug), hardening, images,
disruption budgets, references between objects, the production topology (operators'
clusters, autoscaling on the real queue names, network exposure, zone spread) and the
configuration file each overlay mounts; in production, that both links (RabbitMQ,
PostgreSQL) are TLS: amqps:// and the servers' certificate names in the Secrets'
template, each authority set in himaya.toml and mounted from the right Secret. Finally
a self-test breaks copies of the rendered objects (and of the Secrets' template) in known
ways and fails if any break goes unnoticed.
"""

import argparse
import copy
import functools
import ipaddress
import json
import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import yaml
from importlib_resources import files
from referencing import Registry, Resource

# Validated against both ends of the range deploy/README.md promises.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
K8S_DEFS = "https://kubernetes.io/api/_definitions.json"
NAMESPACE = "himaya"
HUB = "himaya"  # app.kubernetes.io/name of the hub's own pods
COMPONENTS = ["cases", "directory", "router", "audit", "connectors"]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PriorityClass", "StorageClass", "IngressClass"}
# Secrets made by an operator, not by the person deploying.
# CloudNativePG's `<cluster>-ca` is the authority of its server certificate (ca.crt, and
# its private key ca.key).
OPERATOR_SECRETS = {"himaya-rabbitmq-default-user", "himaya-db-app", "himaya-db-superuser",
                    "himaya-db-ca"}
# The queue names the hub declares (crates/bus topology.rs with bus.prefix = "";
# services/router: router.referral-created; crates/connect: deliver.<agency id>; every
# consumer queue has an urgent lane `<queue>.urgent`).
ROUTER_QUEUES = ["router.referral-created", "router.referral-created.urgent"]
DELIVERY_QUEUES = ["deliver.health-cairo", "deliver.health-cairo.urgent", "deliver.mosa-cairo"]
OTHER_QUEUES = ["router.case-updated", "router.withdrawal-notice", "cases.delivery-recorded",
                "cases.service-map", "audit.disclosure-recorded", "himaya.parking",
                "himaya.unrouted"]
# The volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PLACEHOLDER_DIGEST = "@sha256:" + "0" * 64


class Report:
    def __init__(self, quiet=False):
        self.errors = []
        self.warnings = []
        self.quiet = quiet

    def error(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    def warn(self, where, msg):
        self.warnings.append(f"{where}: {msg}")


def name_of(o):
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


# ---- Schemas ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def k8s_dir(version):
    v = ".".join(version.split(".")[:2])
    chosen = [x for x in kubernetes_validate.utils.all_versions()
              if kubernetes_validate.utils.major_minor(x) <= v][-1]
    return files("kubernetes_validate") / "kubernetes-json-schema" / f"v{chosen}-local-strict"


@functools.lru_cache(maxsize=None)
def k8s_definitions(version):
    with (k8s_dir(version) / "_definitions.json").open() as f:
        return Resource.from_contents(json.load(f))


@functools.lru_cache(maxsize=None)
def k8s_schema(version, kind, api_version):
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = k8s_dir(version) / f"{kind.lower()}-{group}.json"
    if not path.is_file():
        return None
    with path.open() as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def crd_schemas(schema_dir):
    out = {}
    for p in sorted(Path(schema_dir).glob("*.json")):
        s = json.loads(p.read_text(encoding="utf-8"))
        props = s["properties"]
        out[(props["apiVersion"]["const"], props["kind"]["const"])] = (p.name, s)
    return out


@functools.lru_cache(maxsize=None)
def validator(version, schema_key, schema_json):
    schema = json.loads(schema_json)
    registry = Registry().with_resource(K8S_DEFS, k8s_definitions(version))
    if "$id" in schema:
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    else:
        registry = Resource.from_contents(schema) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_schema(o, rep, where, schema_dir):
    key = (o.get("apiVersion"), o.get("kind"))
    crds = crd_schemas(schema_dir)
    for version in K8S_VERSIONS:
        if key in crds:
            fname, schema = crds[key]
            label = f"schemas/{fname}"
        else:
            schema = k8s_schema(version, o.get("kind", ""), o.get("apiVersion", ""))
            label = f"Kubernetes {version[:-2]}"
            if schema is None:
                rep.error(where, f"{key[0]} {key[1]}: no Kubernetes {version[:-2]} schema and "
                                 "none in deploy/kubernetes/schemas/ (add one for a new CRD)")
                return
        v = validator(version, f"{key}", json.dumps(schema))
        errs = sorted(v.iter_errors(o), key=lambda e: list(e.absolute_path))
        for e in errs[:5]:
            path = ".".join(str(p) for p in e.absolute_path) or "(top)"
            rep.error(where, f"{path}: {e.message[:300]} ({label})")
        if errs or key in crds:
            return  # a repo schema is version-independent; one report per object


# ---- Pods --------------------------------------------------------------------------------

def pod_template(o):
    spec = o.get("spec", {})
    if o["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template")


def containers(pod):
    return pod.get("initContainers", []) + pod.get("containers", [])


def is_hub(labels):
    return (labels or {}).get("app.kubernetes.io/name") == HUB


def check_pod(o, rep, production):
    where = name_of(o)
    tpl = pod_template(o)
    if not tpl:
        rep.error(where, "no pod template")
        return
    labels = tpl.get("metadata", {}).get("labels", {})
    pod = tpl.get("spec", {})
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        rep.error(where, "securityContext.runAsNonRoot must be true")
    uid = psc.get("runAsUser")
    if not isinstance(uid, int) or uid == 0:
        rep.error(where, "securityContext.runAsUser must be a numeric non-root uid")
    fs_group = psc.get("fsGroup")
    if not isinstance(fs_group, int) or fs_group == 0:
        rep.error(where, "securityContext.fsGroup must be set (non-zero): Secrets and volumes "
                         "are mounted owned by root, and only fsGroup lets the pod's user read them")
    elif isinstance(psc.get("runAsGroup"), int) and psc["runAsGroup"] != fs_group \
            and fs_group not in psc.get("supplementalGroups", []):
        rep.error(where, "the process's group (runAsGroup) is not fsGroup: it could not read "
                         "its Secrets' files")
    pod_seccomp = psc.get("seccompProfile", {}).get("type")
    if is_hub(labels) and pod.get("automountServiceAccountToken") is not False:
        rep.error(where, "automountServiceAccountToken must be false (the hub never calls the API)")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        rep.error(where, "host namespaces are not allowed")

    for c in containers(pod):
        cw = f"{where} container {c.get('name')}"
        sc = c.get("securityContext", {})
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            rep.error(cw, "seccompProfile must be RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            rep.error(cw, "securityContext.allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            rep.error(cw, "privileged containers are not allowed")
        if sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
            rep.error(cw, "must not run as root")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            rep.error(cw, "securityContext.capabilities.drop must contain ALL")
        if caps.get("add"):
            rep.error(cw, "no capability may be added")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            rep.error(cw, "hostPort is not allowed")
        if is_hub(labels) and sc.get("readOnlyRootFilesystem") is not True:
            rep.error(cw, "securityContext.readOnlyRootFilesystem must be true")
        res = c.get("resources", {})
        if not res.get("limits", {}).get("memory") or not res.get("requests", {}).get("cpu"):
            rep.error(cw, "resources: a memory limit and a cpu request are required")
        image = c.get("image", "")
        check_image(image, cw, rep, production)
        if is_hub(labels) and labels.get("app.kubernetes.io/component") in COMPONENTS:
            rp = c.get("readinessProbe", {}).get("httpGet", {})
            lp = c.get("livenessProbe", {}).get("httpGet", {})
            if rp.get("path") != "/readyz" or lp.get("path") != "/livez":
                rep.error(cw, "probes: readiness GET /readyz and liveness GET /livez on the "
                              "metrics port")

    for v in pod.get("volumes", []):
        vw = f"{where} volume {v.get('name')}"
        sources = []
        if "secret" in v:
            sources.append(("secret", v["secret"], v["secret"].get("defaultMode")))
        if "projected" in v:
            for s in v["projected"].get("sources", []):
                if "secret" in s:
                    sources.append(("secret", s["secret"], v["projected"].get("defaultMode")))
        for _, src, default_mode in sources:
            modes = []
            if src.get("items"):
                modes = [i.get("mode", default_mode) for i in src["items"]]
            else:
                modes = [default_mode]
            for m in modes:
                if m is None:
                    rep.error(vw, "a Secret volume needs an explicit defaultMode (0440): "
                                  "Kubernetes' default 0644 lets every user read it")
                    continue
                if not m & 0o040:
                    rep.error(vw, f"mode {m:#o} gives the group no read permission: owned by "
                                  "root, the file is readable by the pod only through fsGroup "
                                  "(use 0440)")
                if m & 0o007:
                    rep.error(vw, f"mode {m:#o} lets other users read the Secret (use 0440)")
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            rep.error(vw, f"volume type {sorted(kinds - RESTRICTED_VOLUMES)} is not allowed by "
                          "the restricted Pod Security Standard the namespace enforces")


def check_image(image, where, rep, production):
    if not image:
        rep.error(where, "no image")
        return
    if DIGEST.search(image):
        if image.endswith(PLACEHOLDER_DIGEST):
            rep.warn(where, f"{image}: the placeholder digest; set the real one "
                            "(kustomize edit set image, deploy/README.md)")
        return
    if production:
        rep.error(where, f"{image}: production images are pinned by digest (@sha256:...)")
        return
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        rep.error(where, f"{image}: no tag (that means latest); pin a tag or a digest")
    elif last.rsplit(":", 1)[1] == "latest":
        rep.error(where, f"{image}: the latest tag is not allowed")


# ---- Cross-references ------------------------------------------------------------------------

def selector_matches(sel, labels):
    if sel is None:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        val = labels.get(e["key"])
        op = e["operator"]
        if op == "In" and val not in e.get("values", []):
            return False
        if op == "NotIn" and val in e.get("values", []):
            return False
        if op == "Exists" and e["key"] not in labels:
            return False
        if op == "DoesNotExist" and e["key"] in labels:
            return False
    return bool(sel.get("matchLabels") or sel.get("matchExpressions"))


def secret_refs(o):
    """(secret name, where) for every Secret an object names."""
    out = []
    kind = o["kind"]
    if kind in WORKLOADS:
        pod = pod_template(o).get("spec", {})
        for v in pod.get("volumes", []):
            if "secret" in v:
                out.append(v["secret"].get("secretName"))
            for s in v.get("projected", {}).get("sources", []):
                if "secret" in s:
                    out.append(s["secret"].get("name"))
        for c in containers(pod):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    out.append(ref.get("name"))
            for e in c.get("envFrom", []):
                if "secretRef" in e:
                    out.append(e["secretRef"].get("name"))
    elif kind == "Cluster":
        spec = o["spec"]
        for r in spec.get("managed", {}).get("roles", []):
            if "passwordSecret" in r:
                out.append(r["passwordSecret"]["name"])
        stores = [spec.get("backup", {}).get("barmanObjectStore")]
        stores += [x.get("barmanObjectStore") for x in spec.get("externalClusters", [])]
        for st in filter(None, stores):
            for ref in st.get("s3Credentials", {}).values():
                if isinstance(ref, dict):
                    out.append(ref["name"])
    elif kind == "TriggerAuthentication":
        out += [r["name"] for r in o["spec"].get("secretTargetRef", [])]
    elif kind == "Ingress":
        out += [t.get("secretName") for t in o["spec"].get("tls", [])]
    return [x for x in out if x]


def configmap_refs(o):
    out = []
    if o["kind"] in WORKLOADS:
        pod = pod_template(o).get("spec", {})
        out += [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
        for c in containers(pod):
            out += [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
            out += [e["valueFrom"]["configMapKeyRef"]["name"] for e in c.get("env", [])
                    if "configMapKeyRef" in e.get("valueFrom", {})]
    return out


def check_references(objs, rep, external_secrets, overlay):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    workloads = [o for o in objs if o["kind"] in WORKLOADS]
    secrets = set(by_kind.get("Secret", {}))
    configmaps = set(by_kind.get("ConfigMap", {}))

    for o in objs:
        where = name_of(o)
        if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != NAMESPACE:
            rep.error(where, f"not in the {NAMESPACE} namespace")
        for s in secret_refs(o):
            if s not in secrets and s not in external_secrets and s not in OPERATOR_SECRETS:
                rep.error(where, f"names the Secret {s}, which the overlay does not make and "
                                 f"{overlay}'s documented Secrets do not list")
        for c in configmap_refs(o):
            if c not in configmaps:
                rep.error(where, f"names the ConfigMap {c}, which the overlay does not make")

    ns = by_kind.get("Namespace", {}).get(NAMESPACE)
    if not ns or ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
        rep.error(f"Namespace/{NAMESPACE}", "must enforce the restricted Pod Security Standard")

    pdbs = list(by_kind.get("PodDisruptionBudget", {}).values())
    for w in workloads:
        if w["kind"] not in ("Deployment", "StatefulSet"):
            continue
        labels = pod_template(w).get("metadata", {}).get("labels", {})
        matching = [p for p in pdbs if selector_matches(p["spec"].get("selector"), labels)]
        if len(matching) != 1:
            rep.error(name_of(w), f"needs exactly one PodDisruptionBudget selecting its pods "
                                  f"(found {len(matching)})")
        if not selector_matches(w["spec"].get("selector"), labels):
            rep.error(name_of(w), "its selector does not select its own pod template")

    for svc in by_kind.get("Service", {}).values():
        sel = svc["spec"].get("selector")
        if not sel:
            continue
        pods = [pod_template(w) for w in workloads
                if selector_matches({"matchLabels": sel}, pod_template(w)["metadata"].get("labels", {}))]
        if not pods:
            rep.error(name_of(svc), "selects no pod of the overlay")
            continue
        for port in svc["spec"].get("ports", []):
            tp = port.get("targetPort", port.get("port"))
            if isinstance(tp, str):
                named = {p.get("name") for t in pods for c in t["spec"]["containers"]
                         for p in c.get("ports", [])}
                if tp not in named:
                    rep.error(name_of(svc), f"targetPort {tp} is no container port of its pods")

    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                svc = p["backend"].get("service", {}).get("name")
                if svc not in by_kind.get("Service", {}):
                    rep.error(name_of(ing), f"backend Service {svc} does not exist")
        hosts = {r.get("host") for r in ing["spec"].get("rules", [])}
        tls_hosts = {h for t in ing["spec"].get("tls", []) for h in t.get("hosts", [])}
        if not hosts <= tls_hosts:
            rep.error(name_of(ing), f"hosts without TLS: {sorted(hosts - tls_hosts)}")

    # The hub's pods read their configuration file from the overlay's ConfigMap.
    for w in workloads:
        tpl = pod_template(w)
        if tpl["metadata"].get("labels", {}).get("app.kubernetes.io/component") not in COMPONENTS:
            continue
        pod = tpl["spec"]
        for c in pod["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            cfg = env.get("HIMAYA_CONFIG")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            ok = False
            if cfg:
                d, f = cfg.rsplit("/", 1)
                vol = vols.get(mounts.get(d, ""), {})
                cm = by_kind.get("ConfigMap", {}).get(vol.get("configMap", {}).get("name"))
                ok = cm is not None and f in cm.get("data", {})
            if not ok:
                rep.error(name_of(w), "HIMAYA_CONFIG must name a file of the mounted "
                                      "himaya-config ConfigMap (the production configuration)")
    return by_kind


# ---- The configuration file ------------------------------------------------------------------

def merged(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def loopback(host):
    if host in ("localhost",) or (host or "").endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(by_kind, rep, repo, production, templates=()):
    cms = [c for n, c in by_kind.get("ConfigMap", {}).items() if n.startswith("himaya-config")]
    if len(cms) != 1 or "himaya.toml" not in cms[0].get("data", {}):
        rep.error("ConfigMap/himaya-config", "the overlay must make one, holding himaya.toml")
        return
    where = f"ConfigMap/{cms[0]['metadata']['name']} himaya.toml"
    try:
        over = tomllib.loads(cms[0]["data"]["himaya.toml"])
    except tomllib.TOMLDecodeError as e:
        rep.error(where, f"not valid TOML: {e}")
        return
    base = tomllib.loads((repo / "config" / "base.toml").read_text(encoding="utf-8"))
    cfg = merged(base, over)
    for key in ("database", "bus"):
        if "url" in over.get(key, {}):
            rep.error(where, f"{key}.url is a secret: it comes from the himaya-secrets Secret")
    for aid, a in cfg.get("agencies", {}).items():
        ep = a.get("endpoint")
        if ep:
            u = urlparse(ep)
            if loopback(u.hostname):
                rep.error(where, f"agencies.{aid}.endpoint is a loopback address: deliveries "
                                 "would go to the pod itself (give the agency's real endpoint)")
            if production and u.scheme != "https":
                rep.error(where, f"agencies.{aid}.endpoint must be https:// in production")
            if production and (u.hostname or "").endswith(".example"):
                rep.warn(where, f"agencies.{aid}.endpoint is still a placeholder ({u.hostname})")
    for key, val in (("telemetry.metrics_listen", cfg["telemetry"].get("metrics_listen")),
                     ("connectors.webhook_listen", cfg["connectors"].get("webhook_listen"))):
        if not val or loopback(val.rsplit(":", 1)[0].strip("[]")):
            rep.error(where, f"{key} must listen on the pod network (0.0.0.0:PORT): the "
                             "kubelet's probes and the Services reach it there")
    if production and cfg["telemetry"].get("format") != "json":
        rep.error(where, "telemetry.format must be json in production (one object per line)")
    if cfg.get("bus", {}).get("prefix", "") != "":
        rep.error(where, "bus.prefix is not empty: put it in front of the queue patterns of "
                         "the ScaledObjects and in this check's queue names")
    hub = urlparse(cfg["connectors"].get("hub_url") or "")
    if hub.scheme != "https" or loopback(hub.hostname):
        rep.error(where, "connectors.hub_url must be https:// to the cases Service")
    # Files the configuration names must be in what the pods mount.
    files_needed = {
        "grpc.tls.cert_file": cfg.get("grpc", {}).get("tls", {}).get("cert_file"),
        "grpc.tls.key_file": cfg.get("grpc", {}).get("tls", {}).get("key_file"),
        "grpc.tls.client_ca_file": cfg.get("grpc", {}).get("tls", {}).get("client_ca_file"),
        "audit.signing_key_file": cfg.get("audit", {}).get("signing_key_file"),
        "connectors.client_certs_dir": cfg.get("connectors", {}).get("client_certs_dir"),
    }
    for key in ("bus", "database"):
        for f in ("ca_file", "client_cert_file", "client_key_file"):
            if cfg.get(key, {}).get(f):
                files_needed[f"{key}.{f}"] = cfg[key][f]
    owner = {"audit.signing_key_file": "audit", "connectors.client_certs_dir": "connectors"}
    deps = by_kind.get("Deployment", {})
    for key, path in files_needed.items():
        comps = [owner[key]] if key in owner else COMPONENTS
        for comp in comps:
            d = deps.get(comp)
            if not d or not path:
                rep.error(where, f"{key}: not set, or no {comp} Deployment")
                continue
            mounts = [m["mountPath"] for c in d["spec"]["template"]["spec"]["containers"]
                      for m in c.get("volumeMounts", [])]
            if not any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts):
                rep.error(where, f"{key} = {path} is in no volume {comp}'s pod mounts")
    if production:
        check_links(by_kind, cfg, where, templates, rep)


# ---- Encrypted links (production) ------------------------------------------------------------

def mounted_secret_file(dep, path):
    """(Secret, key) whose file a Deployment's container sees at `path`; None if the path
    is under no mount or no Secret volume provides it."""
    pod = dep["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod.get("containers", []):
        for m in c.get("volumeMounts", []):
            base = m["mountPath"].rstrip("/") + "/"
            if not path.startswith(base) or m.get("subPath"):
                continue
            rel = path[len(base):]
            v = vols.get(m["name"], {})
            srcs = []
            if "secret" in v:
                srcs.append((v["secret"].get("secretName"), v["secret"].get("items")))
            for src in v.get("projected", {}).get("sources", []):
                if "secret" in src:
                    srcs.append((src["secret"].get("name"), src["secret"].get("items")))
            for name, items in srcs:
                if items:
                    for i in items:
                        if i.get("path") == rel:
                            return name, i.get("key")
                elif "/" not in rel:
                    return name, rel  # the whole Secret: one file per key
    return None


def ca_secret_names(rmq, pg):
    """The Secrets holding the broker's and the database's authorities (key ca.crt)."""
    bus = None
    if rmq:
        tls = rmq["spec"].get("tls", {})
        bus = tls.get("caSecretName") or tls.get("secretName")
    db = None
    if pg:
        db = (pg["spec"].get("certificates", {}).get("serverCASecret")
              or f"{pg['metadata']['name']}-ca")
    return bus, db


def service_names(svc, alt=()):
    """The names an operator's server certificate carries for a Service (CloudNativePG's
    GetClusterAltDNSNames; the broker's certificate is documented to carry the same)."""
    return {svc, f"{svc}.{NAMESPACE}", f"{svc}.{NAMESPACE}.svc",
            f"{svc}.{NAMESPACE}.svc.cluster.local", *alt}


def check_links(by_kind, cfg, where, templates, rep):
    rmq = next(iter(by_kind.get("RabbitmqCluster", {}).values()), None)
    pg = next(iter(by_kind.get("Cluster", {}).values()), None)
    if rmq and not rmq["spec"].get("tls", {}).get("secretName"):
        rep.error(name_of(rmq), "spec.tls.secretName must name the broker's TLS Secret: "
                                "production's link to RabbitMQ is amqps://")
    bus_ca, db_ca = ca_secret_names(rmq, pg)
    deps = {n: d for n, d in by_kind.get("Deployment", {}).items() if n in COMPONENTS}
    for key, secret in (("bus", bus_ca), ("database", db_ca)):
        path = cfg.get(key, {}).get("ca_file")
        if not path:
            rep.error(where, f"{key}.ca_file must be set in production: the {key} link is "
                             "TLS, checked against the server's authority (mounted from "
                             f"{secret or 'its Secret'}, key ca.crt)")
            continue
        for comp, d in sorted(deps.items()):
            got = mounted_secret_file(d, path)
            if got is None:
                continue  # check_config reports a path under no mount
            if got != (secret, "ca.crt"):
                rep.error(name_of(d), f"{key}.ca_file = {path} comes from Secret {got[0]} "
                                      f"key {got[1]}, not the authority {secret} key ca.crt")
    # The database authority's Secret holds its private key beside ca.crt.
    if db_ca:
        for d in deps.values():
            for v in d["spec"]["template"]["spec"].get("volumes", []):
                srcs = [v["secret"] | {"name": v["secret"].get("secretName")}] \
                    if "secret" in v else []
                srcs += [x["secret"] for x in v.get("projected", {}).get("sources", [])
                         if "secret" in x]
                for src in srcs:
                    keys = [i.get("key") for i in src.get("items") or []]
                    if src.get("name") == db_ca and (not keys or set(keys) - {"ca.crt"}):
                        rep.error(f"{name_of(d)} volume {v['name']}",
                                  f"mounts {db_ca} whole or beyond ca.crt: the authority's "
                                  "private key ca.key would be in the pod (items: ca.crt only)")

    # The Secrets' template: the URLs the hub is given.
    sec = next((o for o in templates if o.get("kind") == "Secret"
                and o["metadata"]["name"] == "himaya-secrets"), None)
    if sec is None:
        rep.error("secrets.example.yaml", "no himaya-secrets Secret (the hub's URLs)")
        return
    data = sec.get("stringData", {})
    bus = urlparse(data.get("bus-url", ""))
    rmq_names = service_names(rmq["metadata"]["name"]) if rmq else set()
    if bus.scheme != "amqps":
        rep.error("secrets.example.yaml himaya-secrets", "bus-url must be amqps:// (TLS, port "
                  "5671): production's link to the broker is encrypted")
    elif (bus.port or 5671) != 5671 or (rmq and bus.hostname not in rmq_names):
        rep.error("secrets.example.yaml himaya-secrets", f"bus-url must name the broker's "
                  f"Service on 5671 ({sorted(rmq_names)[-1] if rmq_names else '?'}:5671), "
                  f"not {bus.hostname}:{bus.port}")
    db_names = set()
    if pg:
        db_names = service_names(f"{pg['metadata']['name']}-rw",
                                 pg["spec"].get("certificates", {}).get("serverAltDNSNames", []))
    db_keys = [k for k in data if k.endswith("-database-url")]
    if not db_keys:
        rep.error("secrets.example.yaml himaya-secrets", "no <component>-database-url")
    for k in db_keys:
        u = urlparse(data[k])
        modes = [v for q in u.query.split("&") if q.startswith("sslmode=")
                 for v in [q.split("=", 1)[1]]]
        if u.scheme not in ("postgres", "postgresql") or (pg and u.hostname not in db_names):
            rep.error("secrets.example.yaml himaya-secrets",
                      f"{k} must name the primary's Service by a name its server certificate "
                      f"carries ({', '.join(sorted(db_names))}), not {u.hostname}")
        if any(m != "verify-full" for m in modes):
            rep.error("secrets.example.yaml himaya-secrets",
                      f"{k}: sslmode={modes[0]} (database.ca_file makes it verify-full anyway: "
                      "say so, or leave sslmode out)")

    # No hub pod may reach the broker's plain AMQP port.
    if rmq:
        rmq_labels = {"app.kubernetes.io/name": rmq["metadata"]["name"]}
        hub_labels = {"app.kubernetes.io/name": HUB}
        tls_open = False
        for p in by_kind.get("NetworkPolicy", {}).values():
            sel = p["spec"].get("podSelector", {})
            if sel and not selector_matches(sel, rmq_labels):
                continue
            for rule in p["spec"].get("ingress", []):
                peers = rule.get("from") or [{}]
                from_hub = any(not peer or peer.get("podSelector") == {}
                               or selector_matches(peer.get("podSelector"), hub_labels)
                               for peer in peers if "namespaceSelector" not in peer
                               and "ipBlock" not in peer)
                ports = {x.get("port") for x in rule.get("ports", [])} or {"any"}
                if from_hub and ports & {5672, "amqp", "any"}:
                    rep.error(name_of(p), "lets the hub's pods reach the broker's plain AMQP "
                                          "port 5672: production's link is amqps (5671) only")
                if from_hub and ports & {5671, "amqps", "any"}:
                    tls_open = True
        if not tls_open:
            rep.error("NetworkPolicy", "no policy lets the hub's pods reach the broker's "
                                       "amqps port 5671")


# ---- Production topology ----------------------------------------------------------------------

def check_production(by_kind, rep):
    rmq = list(by_kind.get("RabbitmqCluster", {}).values())
    if len(rmq) != 1 or rmq[0]["spec"].get("replicas", 1) < 3:
        rep.error("RabbitmqCluster", "production needs one RabbitmqCluster of 3 or more replicas")
    pg = list(by_kind.get("Cluster", {}).values())
    if len(pg) != 1 or pg[0]["spec"].get("instances", 1) < 3:
        rep.error("Cluster", "production needs one CloudNativePG Cluster of 3 or more instances")
    elif not pg[0]["spec"].get("backup", {}).get("barmanObjectStore"):
        rep.error(name_of(pg[0]), "backups to object storage (backup.barmanObjectStore) are required")
    else:
        sb = [s for s in by_kind.get("ScheduledBackup", {}).values()
              if s["spec"]["cluster"]["name"] == pg[0]["metadata"]["name"]]
        if not sb:
            rep.error(name_of(pg[0]), "no ScheduledBackup for it")

    deps = by_kind.get("Deployment", {})
    auths = by_kind.get("TriggerAuthentication", {})
    scaled = {}
    for so in by_kind.get("ScaledObject", {}).values():
        target = so["spec"]["scaleTargetRef"]["name"]
        scaled[target] = so
        if target not in deps:
            rep.error(name_of(so), f"scales {target}, which is no Deployment of the overlay")
        elif "replicas" in deps[target]["spec"]:
            rep.error(f"Deployment/{target}", "KEDA owns its replica count: remove spec.replicas, "
                                              "or every apply resets what KEDA chose")
        for t in so["spec"]["triggers"]:
            ref = t.get("authenticationRef", {}).get("name")
            if ref and ref not in auths:
                rep.error(name_of(so), f"TriggerAuthentication {ref} does not exist")
    want = {"router": (ROUTER_QUEUES, DELIVERY_QUEUES + OTHER_QUEUES),
            "connectors": (DELIVERY_QUEUES, ROUTER_QUEUES + OTHER_QUEUES)}
    for target, (yes, no) in want.items():
        so = scaled.get(target)
        if not so:
            rep.error(f"Deployment/{target}", "needs a KEDA ScaledObject on its queues' depth")
            continue
        for t in so["spec"]["triggers"]:
            m = t["metadata"]
            if m.get("useRegex") == "true":
                rx = re.compile(m["queueName"])
                matches = lambda q: rx.search(q) is not None  # noqa: E731
            else:
                matches = lambda q: q == m["queueName"]  # noqa: E731
            missed = [q for q in yes if not matches(q)]
            wrong = [q for q in no if matches(q)]
            if missed or wrong:
                rep.error(name_of(so), f"queueName {m['queueName']!r} misses {missed} or "
                                       f"matches others' queues {wrong}")

    # Topology spread across zones for every Deployment.
    for d in deps.values():
        tsc = d["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        if not any(c["topologyKey"] == "topology.kubernetes.io/zone" for c in tsc):
            rep.error(name_of(d), "no topologySpreadConstraint across zones")
    for o in rmq:
        tsc = (o["spec"].get("override", {}).get("statefulSet", {}).get("spec", {})
               .get("template", {}).get("spec", {}).get("topologySpreadConstraints", []))
        if not any(c["topologyKey"] == "topology.kubernetes.io/zone" for c in tsc):
            rep.error(name_of(o), "no topologySpreadConstraint across zones")
    for o in pg:
        tsc = o["spec"].get("topologySpreadConstraints", [])
        if not any(c["topologyKey"] == "topology.kubernetes.io/zone" for c in tsc):
            rep.error(name_of(o), "no topologySpreadConstraint across zones")
    if rmq and not any(selector_matches(p["spec"]["selector"],
                                        {"app.kubernetes.io/name": rmq[0]["metadata"]["name"]})
                       for p in by_kind.get("PodDisruptionBudget", {}).values()):
        rep.error(name_of(rmq[0]), "no PodDisruptionBudget for its nodes")

    check_network(by_kind, rep)


def check_network(by_kind, rep):
    pols = list(by_kind.get("NetworkPolicy", {}).values())
    if not any(p["spec"].get("podSelector") == {} and "Ingress" in p["spec"].get("policyTypes", [])
               and not p["spec"].get("ingress") for p in pols):
        rep.error("NetworkPolicy", "a default-deny policy for ingress (podSelector {}) is required")
    # What each hub pod lets in from beyond the namespace.
    for comp in COMPONENTS:
        labels = {"app.kubernetes.io/name": HUB, "app.kubernetes.io/component": comp}
        for p in pols:
            sel = p["spec"].get("podSelector", {})
            if sel and not selector_matches(sel, labels):
                continue
            for rule in p["spec"].get("ingress", []):
                ports = {x.get("port") for x in rule.get("ports", [])} or {"any"}
                peers = rule.get("from")
                if not peers:
                    outside = "anywhere"
                else:
                    outside = None
                    for peer in peers:
                        if "ipBlock" in peer:
                            outside = "an IP block"
                        ns = peer.get("namespaceSelector")
                        if ns is not None:
                            names = ns.get("matchLabels", {}).get("kubernetes.io/metadata.name")
                            if names != NAMESPACE:
                                outside = f"namespace {names or 'any'}"
                if outside is None:
                    continue
                for port in ports:
                    allowed = {
                        "anywhere": {50051} if comp in ("cases", "directory") else set(),
                        "namespace monitoring": {9464},
                    }.get(outside, set())
                    if comp == "connectors" and outside.startswith("namespace ") \
                            and outside != "namespace monitoring":
                        allowed = {8090}  # the Ingress controller's namespace
                    if port not in allowed:
                        rep.error(name_of(p), f"opens {comp}'s port {port} to {outside}")
    for comp in ("cases", "directory"):
        labels = {"app.kubernetes.io/name": HUB, "app.kubernetes.io/component": comp}
        if not any((not p["spec"].get("podSelector") or selector_matches(p["spec"]["podSelector"], labels))
                   and any(not r.get("from") and 50051 in {x.get("port") for x in r.get("ports", [])}
                           for r in p["spec"].get("ingress", []))
                   for p in pols):
            rep.error(f"Deployment/{comp}", "no NetworkPolicy lets agencies reach its gRPC port")
    ing = by_kind.get("Ingress", {})
    if not any(p["backend"]["service"]["name"] == "connectors"
               for i in ing.values() for r in i["spec"].get("rules", [])
               for p in r.get("http", {}).get("paths", [])):
        rep.error("Ingress", "the webhooks (connectors) must be behind an Ingress with TLS")


# ---- Running it ------------------------------------------------------------------------------------

def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def check_overlay(objs, rep, repo, schema_dir, production, external_secrets, overlay,
                  templates=()):
    for o in objs:
        validate_schema(o, rep, name_of(o), schema_dir)
    schema_errors = len(rep.errors)
    try:
        for o in objs:
            if o["kind"] in WORKLOADS:
                check_pod(o, rep, production)
        by_kind = check_references(objs, rep, external_secrets, overlay)
        check_config(by_kind, rep, repo, production, templates)
        if production:
            check_production(by_kind, rep)
    except (KeyError, TypeError, AttributeError, IndexError, StopIteration) as e:
        # Only an object the schemas already refused may be too malformed to look into.
        if not schema_errors:
            raise
        rep.error(overlay, f"further checks stopped at a malformed object ({type(e).__name__}: {e})")


def breakages(objs, templates):
    """Copies of a production rendering and of the Secrets' template, each broken in one
    way the check must catch: (label, objects, template, expected error)."""
    def dep(objs_, name):
        return next(o for o in objs_ if o["kind"] == "Deployment" and o["metadata"]["name"] == name)

    def case(label, fn, expect):
        c = copy.deepcopy(objs)
        fn(c)
        return label, c, templates, expect

    def template_case(label, fn, expect):
        t = copy.deepcopy(templates)
        fn(t)
        return label, objs, t, expect

    def config(c):
        return next(o for o in c if o["kind"] == "ConfigMap")["data"]

    def hub_secret(t):
        return next(o for o in t if o["kind"] == "Secret" and o["metadata"]["name"] == "himaya-secrets")["stringData"]

    return [
        case("cases pod without fsGroup (the bug that stopped every pod)",
             lambda c: dep(c, "cases")["spec"]["template"]["spec"]["securityContext"].pop("fsGroup"),
             'fsGroup must be set'),
        case("hub.pem mounted 0400 (unreadable through fsGroup)",
             lambda c: dep(c, "router")["spec"]["template"]["spec"]["volumes"][1]["secret"].update(defaultMode=0o400),
             'gives the group no read permission'),
        case("signing key readable by every user",
             lambda c: dep(c, "audit")["spec"]["template"]["spec"]["volumes"][2]["secret"]["items"][0].update(mode=0o444),
             'lets other users read'),
        case("runAsNonRoot removed",
             lambda c: dep(c, "directory")["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
             'runAsNonRoot must be true'),
        case("an image by tag in production",
             lambda c: dep(c, "connectors")["spec"]["template"]["spec"]["containers"][0].update(image="registry.example/himaya:latest"),
             'pinned by digest'),
        case("a typo in a Deployment field",
             lambda c: dep(c, "cases")["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="Always"),
             "'imagePullPolicyy' was unexpected"),
        case("a RabbitmqCluster field that does not exist",
             lambda c: next(o for o in c if o["kind"] == "RabbitmqCluster")["spec"].update(replica=3),
             "'replica' was unexpected"),
        case("a CNPG Cluster without the required instances",
             lambda c: next(o for o in c if o["kind"] == "Cluster")["spec"].pop("instances"),
             "'instances' is a required property"),
        case("a ScaledObject on a queue name that does not exist",
             lambda c: next(o for o in c if o["kind"] == "ScaledObject" and o["metadata"]["name"] == "router")["spec"]["triggers"][0]["metadata"].update(queueName="^router\\.referrals$"),
             "misses ['router.referral-created'"),
        case("a missing PodDisruptionBudget",
             lambda c: c.remove(next(o for o in c if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "connectors")),
             'needs exactly one PodDisruptionBudget'),
        case("metrics opened to every namespace",
             lambda c: next(o for o in c if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "metrics-from-monitoring")["spec"]["ingress"][0]["from"][0].update(namespaceSelector={}),
             'port 9464 to namespace any'),
        case("deliveries to 127.0.0.1 in the configuration",
             lambda c: next(o for o in c if o["kind"] == "ConfigMap")["data"].update(
                 {"himaya.toml": next(o for o in c if o["kind"] == "ConfigMap")["data"]["himaya.toml"].replace(
                     "https://referrals.health-cairo.example/referrals", "http://127.0.0.1:8088/referrals")}),
             'is a loopback address'),
        template_case("the broker's URL in plain AMQP (amqp://, 5672)",
                      lambda t: hub_secret(t).update({"bus-url": hub_secret(t)["bus-url"].replace(
                          "amqps://", "amqp://").replace(":5671/", ":5672/")}),
                      'bus-url must be amqps://'),
        case("bus.ca_file dropped from the configuration",
             lambda c: config(c).update({"himaya.toml": re.sub(
                 r"(?m)^ca_file = \"/var/run/himaya-links/bus-ca.crt\"$", "", config(c)["himaya.toml"])}),
             'bus.ca_file must be set in production'),
        case("the database authority's Secret mounted whole (its ca.key in the pod)",
             lambda c: dep(c, "router")["spec"]["template"]["spec"]["volumes"][-1]["projected"]["sources"][1]["secret"].pop("items"),
             'the authority\'s private key ca.key'),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--dir", required=True, help="deploy/kubernetes (or a copy)")
    ap.add_argument("--rendered", nargs=2, action="append", metavar=("OVERLAY", "FILE"), required=True)
    args = ap.parse_args()
    repo, kdir = Path(args.repo), Path(args.dir)
    schema_dir = str(kdir / "schemas")
    failed = False
    examples = load(kdir / "overlays/production/secrets.example.yaml")
    external = {"production": {o["metadata"]["name"] for o in examples if o["kind"] == "Secret"},
                # Made from `himaya dev-certs` (deploy/README.md).
                "development": {"himaya-grpc-tls", "himaya-agency-certs"}}
    prod_objs = None
    for overlay, path in args.rendered:
        objs = load(path)
        rep = Report()
        production = overlay == "production"
        check_overlay(objs, rep, repo, schema_dir, production, external.get(overlay, set()), overlay,
                      examples)
        kinds = sorted({o["kind"] for o in objs})
        print(f"[k8s] {overlay}: {len(objs)} objects ({', '.join(kinds)})")
        for w in dict.fromkeys(w.split(": ", 1)[1] for w in rep.warnings):
            print(f"[k8s]   warning: {w}")
        for e in rep.errors:
            print(f"[k8s]   ERROR {e}")
        failed |= bool(rep.errors)
        if production:
            prod_objs = objs
            if any(o["kind"] == "Secret" for o in objs):
                print("[k8s]   ERROR production must not generate Secrets: they come from the vault")
                failed = True

    # Files applied by hand: their shape, against the same schemas.
    for extra in ("overlays/production/recovery.example.yaml", "overlays/production/secrets.example.yaml"):
        rep = Report()
        objs = load(kdir / extra)
        for o in objs:
            validate_schema(o, rep, f"{extra} {name_of(o)}", schema_dir)
        for o in objs:
            if o["kind"] == "Cluster":
                rec = o["spec"].get("bootstrap", {}).get("recovery", {})
                srcs = {x["name"] for x in o["spec"].get("externalClusters", [])}
                if rec and rec.get("source") not in srcs:
                    rep.error(extra, f"recovery source {rec.get('source')} is no externalCluster")
        print(f"[k8s] {extra}: {len(objs)} objects")
        for e in rep.errors:
            print(f"[k8s]   ERROR {e}")
        failed |= bool(rep.errors)

    # Self-test: each known breakage must be reported.
    if prod_objs is not None and not failed:
        missed = []
        for label, broken, broken_templates, expect in breakages(prod_objs, examples):
            rep = Report()
            check_overlay(broken, rep, repo, schema_dir, True, external["production"], "production",
                          broken_templates)
            if not any(expect in e for e in rep.errors):
                missed.append(f"{label} (expected an error saying {expect!r})")
        n = len(breakages(prod_objs, examples))
        if missed:
            failed = True
            for m in missed:
                print(f"[k8s]   ERROR self-test: the check did not notice: {m}")
        print(f"[k8s] self-test: {n - len(missed)} of {n} deliberate breakages caught")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
