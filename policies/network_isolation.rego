# Project namespaces stay isolated from other namespaces: never on production clusters,
# a warning elsewhere.
package plinth_defaults.network_isolation

import data.plinth_defaults.lib

deny_network_isolation_off contains {"msg": msg, "location": {"field": "spec.network.isolation"}} if {
	input.kind == "Project"
	lib.is_spec(input)
	input.spec.network.isolation == false
	lib.project_of(input).production
	msg := sprintf("project `%s` runs on a production cluster and must keep network isolation on", [input.metadata.name])
}

warn_network_isolation_off contains {"msg": msg, "location": {"field": "spec.network.isolation"}} if {
	input.kind == "Project"
	lib.is_spec(input)
	input.spec.network.isolation == false
	not lib.project_of(input).production
	msg := sprintf("project `%s` turns network isolation off: any namespace can reach its pods", [input.metadata.name])
}

deny_network_isolation_off contains {"msg": msg, "location": {"field": "spec.defaults.networkIsolation"}} if {
	input.kind == "Platform"
	input.spec.defaults.networkIsolation == false
	msg := "the platform turns network isolation off by default; projects must opt out one by one"
}
