# A model reachable from outside the cluster requires client tokens.
package main

deny_public_endpoint_without_tokens contains {"msg": msg, "location": {"field": "spec.endpoint.access"}} if {
	input.kind == "ModelRollout"
	input.spec.endpoint.access == "public"
	count(object.get(input.spec.endpoint, "clientTokenSecrets", [])) == 0
	msg := sprintf("model rollout `%s` is public but names no `clientTokenSecrets`", [input.metadata.name])
}
