package plinth_defaults.network_isolation

open_project := {"apiVersion": "plinth.dev/v1alpha1", "kind": "Project", "metadata": {"name": "p"}, "spec": {"network": {"isolation": false}}}

test_open_production_project_is_denied if {
	count(deny_network_isolation_off) == 1 with input as open_project with data.plinth.resolved.projects as {"p": {"production": true}}
}

test_open_project_elsewhere_is_warned if {
	count(deny_network_isolation_off) == 0 with input as open_project with data.plinth.resolved.projects as {"p": {"production": false}}
	count(warn_network_isolation_off) == 1 with input as open_project with data.plinth.resolved.projects as {"p": {"production": false}}
}

test_platform_default_off_is_denied if {
	count(deny_network_isolation_off) == 1 with input as {"kind": "Platform", "metadata": {"name": "x"}, "spec": {"defaults": {"networkIsolation": false}}}
}
