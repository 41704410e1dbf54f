# A conftest-style policy next to the default library: `package main`, a rule named `name`
# (the default library uses `some name, …` too; it lives in its own packages, so they never
# collide), and a complete `violation` rule that is undefined for every other input.
package main

name := input.metadata.name

violation := [{"msg": msg, "details": {"ticket": "CHG-7"}}] if {
	input.kind == "Project"
	name == "bed-management"
	msg := sprintf("project `%s` is frozen by change control", [name])
}
