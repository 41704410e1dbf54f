package plinth_defaults.registries

deployment(image) := {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}

test_foreign_registry_is_denied if {
	count(deny_image_registry) == 1 with input as deployment("docker.io/x/y:1") with data.plinth.parameters as {"allowedRegistries": ["registry.example.org/"]}
}

test_allowed_registry_passes if {
	count(deny_image_registry) == 0 with input as deployment("registry.example.org/x/y:1") with data.plinth.parameters as {"allowedRegistries": ["registry.example.org/"]}
}

test_no_list_no_restriction if {
	count(deny_image_registry) == 0 with input as deployment("docker.io/x/y:1") with data.plinth.parameters as {}
}

test_spec_images_are_checked if {
	project := {"kind": "Project", "metadata": {"name": "p"}, "spec": {"images": [{"name": "i", "url": "quay.io/a:1"}]}}
	count(deny_image_registry) == 1 with input as project with data.plinth.parameters as {"allowedRegistries": ["registry.example.org/"]}
}
