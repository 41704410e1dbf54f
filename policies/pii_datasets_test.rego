package plinth_defaults.pii_datasets

pii(access, global) := {"kind": "Dataset", "metadata": {"name": "adm"}, "spec": {"sensitivity": "pii", "access": access, "global": global}}

test_read_write_pii_is_denied if {
	findings := deny_pii_write with input as pii([{"project": "a", "mode": "read-only"}, {"project": "b", "mode": "read-write"}], false)
	count(findings) == 1
	some f in findings
	f.location.field == "spec.access[1].mode"
}

test_read_only_pii_is_allowed if {
	count(deny_pii_write) == 0 with input as pii([{"project": "a", "mode": "read-only"}], false)
}

test_global_pii_is_denied if {
	count(deny_pii_global) == 1 with input as pii([], true)
	count(deny_pii_global) == 0 with input as pii([], false)
}

test_internal_data_may_be_written if {
	count(deny_pii_write) == 0 with input as {"kind": "Dataset", "metadata": {"name": "x"}, "spec": {"sensitivity": "internal", "access": [{"project": "a", "mode": "read-write"}]}}
}

test_pii_on_research_cluster_is_denied if {
	view := {"resolved": {"projects": {"a": {"clusters": ["prod", "lab"]}}, "clusters": {"prod": {"production": true}, "lab": {"production": false}}}}
	findings := deny_pii_outside_production with input as pii([{"project": "a", "mode": "read-only"}], false) with data.plinth as view
	count(findings) == 1
	prod_only := {"resolved": {"projects": {"a": {"clusters": ["prod"]}}, "clusters": {"prod": {"production": true}}}}
	count(deny_pii_outside_production) == 0 with input as pii([{"project": "a", "mode": "read-only"}], false) with data.plinth as prod_only
}
