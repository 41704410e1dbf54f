# Every project has at least two owners, so changes can be reviewed and nobody is a single
# point of failure.
package plinth_defaults.owners

import data.plinth_defaults.lib

warn_single_owner contains {"msg": msg, "location": {"field": "spec.owners"}} if {
	input.kind == "Project"
	lib.is_spec(input)
	count(object.get(input.spec, "owners", [])) < 2
	msg := sprintf("project `%s` has fewer than two owners", [input.metadata.name])
}
