package plinth_defaults.deletion_policy

test_delete_policy_is_denied if {
	count(deny_deletion_policy) == 1 with input as {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"sensitivity": "pii", "provision": {"deletionPolicy": "Delete"}}}
}

test_public_data_may_be_deleted if {
	count(deny_deletion_policy) == 0 with input as {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"sensitivity": "public", "provision": {"deletionPolicy": "Delete"}}}
}

test_crossplane_bucket_with_delete_is_denied if {
	bucket := {"apiVersion": "s3.aws.upbound.io/v1beta2", "kind": "Bucket", "metadata": {"name": "b", "annotations": {"plinth.dev/sensitivity": "internal"}}, "spec": {"deletionPolicy": "Delete"}}
	count(deny_deletion_policy) == 1 with input as bucket
}
