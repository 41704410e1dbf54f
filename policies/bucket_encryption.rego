# Buckets plinth provisions are encrypted at rest.
package plinth_defaults.bucket_encryption

deny_bucket_encryption_off contains {"msg": msg, "location": {"field": "spec.provision.encryption.enabled"}} if {
	input.kind == "Dataset"
	input.spec.provision
	input.spec.provision.encryption.enabled == false
	msg := sprintf("dataset `%s` provisions a bucket without encryption at rest", [input.metadata.name])
}

# Sensitive data is encrypted with a customer-managed key.
warn_bucket_managed_key contains {"msg": msg, "location": {"field": "spec.provision"}} if {
	input.kind == "Dataset"
	input.spec.provision.createBucket == true
	input.spec.sensitivity in {"confidential", "pii"}
	not input.spec.provision.encryption.kmsKey
	msg := sprintf("%s dataset `%s` is encrypted with the provider's key; set `provision.encryption.kmsKey` to a customer-managed key", [input.spec.sensitivity, input.metadata.name])
}
