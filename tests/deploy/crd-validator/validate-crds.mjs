// Validates the ServiceMonitor and PrometheusRule objects in the given YAML
// files (multi-document, e.g. `kubectl kustomize` output) against the
// prometheus-operator CRD schemas that @kubernetes-models/prometheus-operator
// bundles. No cluster and no network. Other API groups are left to
// kubernetes-validate; an unknown monitoring.coreos.com kind is an error.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import * as monitoringV1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc || !String(doc.apiVersion).startsWith("monitoring.coreos.com/")) continue;
    const where = `${file}: ${doc.kind}/${doc.metadata?.name}`;
    const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? monitoringV1[doc.kind] : undefined;
    if (typeof Model !== "function") {
      console.error(`ERROR ${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      failed += 1;
      continue;
    }
    try {
      new Model(doc).validate();
      console.log(`INFO ${where} passed against ${doc.apiVersion}`);
      checked += 1;
    } catch (error) {
      console.error(`ERROR ${where} did not validate: ${error.message}`);
      failed += 1;
    }
  }
}
console.log(`${checked} passed, ${failed} failed`);
process.exit(failed === 0 && checked > 0 ? 0 : 1);
