package plinth_defaults.latest_tag

pod(image) := {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}}

test_latest_is_denied if {
	count(deny_latest_tag) == 1 with input as pod("nginx:latest")
}

test_untagged_is_denied if {
	count(deny_latest_tag) == 1 with input as pod("registry.example.org:5000/nginx")
}

test_tag_and_digest_pass if {
	count(deny_latest_tag) == 0 with input as pod("registry.example.org:5000/nginx:1.27")
	count(deny_latest_tag) == 0 with input as pod("nginx@sha256:abc")
}
