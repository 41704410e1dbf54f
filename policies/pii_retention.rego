# Confidential and PII data declares how long it must be kept.
package plinth_defaults.pii_retention

warn_retention contains {"msg": msg, "location": {"field": "spec.sensitivity"}} if {
	input.kind == "Dataset"
	input.spec.sensitivity in {"confidential", "pii"}
	not input.spec.retention
	msg := sprintf("%s dataset `%s` has no `retention`", [input.spec.sensitivity, input.metadata.name])
}
