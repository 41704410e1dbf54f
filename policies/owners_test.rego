package plinth_defaults.owners

test_one_owner_is_warned if {
	count(warn_single_owner) == 1 with input as {"apiVersion": "plinth.dev/v1alpha1", "kind": "Project", "metadata": {"name": "p"}, "spec": {"owners": ["a"]}}
}

test_two_owners_pass if {
	count(warn_single_owner) == 0 with input as {"apiVersion": "plinth.dev/v1alpha1", "kind": "Project", "metadata": {"name": "p"}, "spec": {"owners": ["a", "b"]}}
}
