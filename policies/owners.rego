# Every project has at least two owners, so changes can be reviewed and nobody is a single
# point of failure.
package main

import data.plinth_lib

warn_single_owner contains {"msg": msg, "location": {"field": "spec.owners"}} if {
	input.kind == "Project"
	plinth_lib.is_spec(input)
	count(object.get(input.spec, "owners", [])) < 2
	msg := sprintf("project `%s` has fewer than two owners", [input.metadata.name])
}
