# METADATA
# description: |
#   Group-to-route grants (data.sqlgate.config.routes[subject].groups):
#   members of a listed group may call the route.
package sqlgate.lib.grants

import data.sqlgate.config

# route is the configuration of the requested route, undefined for a route the
# policy does not list. Rules on the decision path read it once into a local
# variable and pass it to the functions below: a reference to a rule costs far
# more than one to a variable.
route := config.routes[input.route.subject]

# groups(route) is the set of the principal's groups that are granted route.
groups(route) := {group |
	some group in route.groups
	group in input.principal.groups
}

# routes is the set of route subjects granted to any of the principal's groups.
routes contains subject if {
	some subject, r in config.routes
	some group in r.groups
	group in input.principal.groups
}
