# METADATA
# description: |
#   Route grants (data.sqlgate.config.routes[subject].groups and .roles):
#   members of a listed group, and principals holding a listed application
#   role (input.principal.roles: Entra ID or Okta app roles, which services
#   signed in with client credentials carry instead of groups), may call the
#   route. Event grants (data.sqlgate.config.events[subject].groups and
#   .roles) name, the same way, who may subscribe to a route's emit subject.
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

# roles(route) is the set of the principal's roles that are granted route.
roles(route) := {role |
	some role in route.roles
	role in input.principal.roles
}

# routes is the set of route subjects granted to any of the principal's groups
# or roles.
routes contains subject if {
	some subject, r in config.routes
	some group in r.groups
	group in input.principal.groups
}

routes contains subject if {
	some role in input.principal.roles
	some subject, r in config.routes
	role in r.roles
}

# events is the set of emit subjects (keys of config.events) whose events any
# of the principal's groups or roles may follow.
events contains subject if {
	some subject, e in config.events
	some group in e.groups
	group in input.principal.groups
}

events contains subject if {
	some role in input.principal.roles
	some subject, e in config.events
	role in e.roles
}
