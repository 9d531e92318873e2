# METADATA
# description: |
#   Group-to-route grants (data.sqlgate.config.grants): members of a group may
#   call the routes listed for it.
package sqlgate.lib.grants

import data.sqlgate.config

# groups is the set of the principal's groups that grant the requested route.
groups contains grant.group if {
	some grant in config.grants
	grant.group in input.principal.groups
	input.route.subject in grant.routes
}

# routes is the set of routes granted to any of the principal's groups.
routes contains route if {
	some grant in config.grants
	grant.group in input.principal.groups
	some route in grant.routes
}
