// `sandbox render --target k8s`: the egress Deployment of a fleet that
// replicates its audit to a central PostgreSQL store (see render.h and
// docs/audit-fleet.md). Kept apart from render.cpp's sandbox files.
#include <sstream>

#include "egress/sandbox/render.h"
#include "sandbox/k8s_yaml.h"

namespace egress::sandbox {

RenderedFile render_k8s_deployment(const RenderOptions& o) {
  const auto port = std::to_string(o.proxy_port);
  const auto& app = o.proxy_service;
  std::ostringstream d;
  d << "# egress as a Deployment of " << o.replicas << " replicas behind a Service. Each pod keeps its\n"
    << "# own SQLite audit file (emptyDir: the commit-before-connect log) and ships every\n"
    << "# event to the central PostgreSQL store, named by its pod name. Create the Secret:\n"
    << "#   kubectl -n " << o.k8s_namespace << " create secret generic " << o.audit_secret << " \\\n"
    << "#     --from-literal=dsn='postgresql://egress@egress-audit-db:5432/egress' \\\n"
    << "#     --from-literal=password='...'\n"
    << "# The credentials egress injects (docs/secrets.md) come from the Secret " << o.credentials_secret << ",\n"
    << "# one key per secret, mounted into these pods only; never mount it into a worker's pod:\n"
    << "#   kubectl -n " << o.k8s_namespace << " create secret generic " << o.credentials_secret
    << " --from-file=hf_token=./hf_token\n"
    << "# Sizing: docs/audit-fleet.md (events per second one replica ships).\n"
    << k8s_object_head("apps/v1", "Deployment", app, o.k8s_namespace)
    << "  replicas: " << o.replicas << "\n"
    << "  selector:\n"
    << "    matchLabels: {app: " << app << "}\n"
    << "  template:\n"
    << "    metadata:\n"
    << "      labels: {app: " << app << "}\n"
    << "    spec:\n"
    << "      automountServiceAccountToken: false\n"
    << "      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001}\n"
    << "      containers:\n"
    << "        - name: egress\n"
    << "          image: " << o.image << "\n"
    << "          args: [\"serve\", \"--mode\", \"" << policy::to_string(o.mode) << "\", \"--listen\", \"0.0.0.0:" << port
    << "\",\n"
    << "                 \"--admin-listen\", \"0.0.0.0:9128\", \"--audit-db\", \"/var/lib/egress/audit.db\",\n"
    << "                 \"--audit-replicate-to\", \"$(EGRESS_AUDIT_DSN)\", \"--audit-replica\", \"$(POD_NAME)\",\n"
    << "                 \"--audit-replicate-password-file\", \"/etc/egress/audit-db/password\",\n"
    << "                 \"--secrets-dir\", \"/etc/egress/secrets\"]\n"
    << "          env:\n"
    << "            - name: POD_NAME   # the replica's name in the central store\n"
    << "              valueFrom: {fieldRef: {fieldPath: metadata.name}}\n"
    << "            - name: EGRESS_AUDIT_DSN\n"
    << "              valueFrom: {secretKeyRef: {name: " << o.audit_secret << ", key: dsn}}\n"
    << "          ports:\n"
    << "            - {name: proxy, containerPort: " << port << "}\n"
    << "            - {name: admin, containerPort: 9128}\n"
    << "          readinessProbe: {httpGet: {path: /readyz, port: admin}, periodSeconds: 5}\n"
    << "          livenessProbe: {httpGet: {path: /healthz, port: admin}, periodSeconds: 10}\n"
    << "          securityContext:\n"
    << "            readOnlyRootFilesystem: true\n"
    << "            allowPrivilegeEscalation: false\n"
    << "            capabilities: {drop: [ALL]}\n"
    << "          volumeMounts:\n"
    << "            - {name: audit, mountPath: /var/lib/egress}\n"
    << "            - {name: audit-db, mountPath: /etc/egress/audit-db, readOnly: true}\n"
    << "            - {name: credentials, mountPath: /etc/egress/secrets, readOnly: true}\n"
    << "      volumes:\n"
    << "        - name: audit      # the local log; unshipped rows wait here while PostgreSQL is away\n"
    << "          emptyDir: {sizeLimit: 2Gi}\n"
    << "        - name: audit-db\n"
    << "          secret: {secretName: " << o.audit_secret << ", items: [{key: password, path: password}], "
    << "defaultMode: 0400}\n"
    << "        - name: credentials  # group-readable through fsGroup: egress accepts 0440, refuses wider\n"
    << "          secret: {secretName: " << o.credentials_secret << ", optional: true, defaultMode: 0440}\n"
    << "---\n"
    << k8s_object_head("v1", "Service", app, o.k8s_namespace)
    << "  selector: {app: " << app << "}\n"
    << "  ports:\n"
    << "    - {name: proxy, port: " << port << ", targetPort: " << port << "}\n"
    << "---\n"
    << "# egress pods reach the central store (the other policies exclude cluster ranges).\n"
    << network_policy_head(app + "-audit-db", o.k8s_namespace, app, "Egress")
    << "  egress:\n"
    << app_peer_rule(Direction::To, "egress-audit-db", "5432");
  return {"egress-deployment.yaml", d.str()};
}

}  // namespace egress::sandbox
