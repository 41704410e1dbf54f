# PII datasets are read-only for every project and never global.
package plinth_defaults.pii_datasets

deny_pii_write contains {"msg": msg, "location": {"field": sprintf("spec.access[%d].mode", [i])}} if {
	input.kind == "Dataset"
	input.spec.sensitivity == "pii"
	some i, grant in input.spec.access
	grant.mode == "read-write"
	msg := sprintf("PII dataset `%s` must be read-only, but project `%s` is granted read-write", [input.metadata.name, grant.project])
}

deny_pii_global contains {"msg": msg, "location": {"field": "spec.global"}} if {
	input.kind == "Dataset"
	input.spec.sensitivity == "pii"
	input.spec.global == true
	msg := sprintf("PII dataset `%s` must not be global; grant it to the projects that need it", [input.metadata.name])
}

# PII stays on production clusters (where access is audited): a grant of PII may not be
# mounted on a cluster that is not marked `production` (the grant's `clusters`, else every
# cluster of its project).
deny_pii_outside_production contains {"msg": msg, "location": {"field": sprintf("spec.access[%d].project", [i])}} if {
	input.kind == "Dataset"
	input.spec.sensitivity == "pii"
	some i, grant in input.spec.access
	some cluster in grant_clusters(grant)
	not data.plinth.resolved.clusters[cluster].production
	msg := sprintf("PII dataset `%s` is granted to project `%s`, which lives on cluster `%s`, not a production cluster", [input.metadata.name, grant.project, cluster])
}

# The clusters a dataset grant is mounted on.
grant_clusters(grant) := grant.clusters if {
	count(object.get(grant, "clusters", [])) > 0
}

grant_clusters(grant) := data.plinth.resolved.projects[grant.project].clusters if {
	count(object.get(grant, "clusters", [])) == 0
}
