package main

test_public_without_tokens_is_denied if {
	count(deny_public_endpoint_without_tokens) == 1 with input as {"kind": "ModelRollout", "metadata": {"name": "m"}, "spec": {"endpoint": {"access": "public"}}}
}

test_public_with_tokens_and_private_pass if {
	count(deny_public_endpoint_without_tokens) == 0 with input as {"kind": "ModelRollout", "metadata": {"name": "m"}, "spec": {"endpoint": {"access": "public", "clientTokenSecrets": ["t"]}}}
	count(deny_public_endpoint_without_tokens) == 0 with input as {"kind": "ModelRollout", "metadata": {"name": "m"}, "spec": {"endpoint": {"access": "private"}}}
}
