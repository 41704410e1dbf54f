# Data outlives its spec: provisioned buckets keep `deletionPolicy: Retain` (public data may
# opt out), and no generated cloud storage object says `Delete`.
package plinth_defaults.deletion_policy

deny_deletion_policy contains {"msg": msg, "location": {"field": "spec.provision.deletionPolicy"}} if {
	input.kind == "Dataset"
	input.spec.provision.deletionPolicy == "Delete"
	input.spec.sensitivity != "public"
	msg := sprintf("dataset `%s` holds %s data and would delete its bucket with the spec; use `deletionPolicy: Retain`", [input.metadata.name, object.get(input.spec, "sensitivity", "internal")])
}

deny_deletion_policy contains msg if {
	input.kind in {"Bucket", "Account", "Container"}
	contains(input.apiVersion, "upbound.io/")
	input.spec.deletionPolicy == "Delete"
	input.metadata.annotations["plinth.dev/sensitivity"] != "public"
	msg := sprintf("%s `%s` would be deleted with its spec; use `deletionPolicy: Retain`", [input.kind, input.metadata.name])
}
