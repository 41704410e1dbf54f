package plinth_defaults.bucket_encryption

dataset(provision, sensitivity) := {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"sensitivity": sensitivity, "provision": provision}}

test_unencrypted_bucket_is_denied if {
	count(deny_bucket_encryption_off) == 1 with input as dataset({"createBucket": true, "encryption": {"enabled": false}}, "internal")
	count(deny_bucket_encryption_off) == 0 with input as dataset({"createBucket": true, "encryption": {"enabled": true}}, "internal")
}

test_pii_without_managed_key_is_warned if {
	count(warn_bucket_managed_key) == 1 with input as dataset({"createBucket": true, "encryption": {"enabled": true}}, "pii")
	count(warn_bucket_managed_key) == 0 with input as dataset({"createBucket": true, "encryption": {"enabled": true, "kmsKey": "k"}}, "pii")
}
