package plinth_defaults.pii_retention

test_pii_without_retention_is_warned if {
	count(warn_retention) == 1 with input as {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"sensitivity": "pii"}}
	count(warn_retention) == 0 with input as {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"sensitivity": "pii", "retention": "7y"}}
	count(warn_retention) == 0 with input as {"kind": "Dataset", "metadata": {"name": "d"}, "spec": {"sensitivity": "public"}}
}
