# METADATA
# title: Configuration checks
# description: |
#   data.sqlgate.lint.problems lists what is wrong with data.sqlgate.config.
#   sqlgate evaluates it (without input) whenever it loads the policy and
#   refuses to serve a policy with problems, keeping the last good one, so a
#   typo such as "buisness_hours: true" never silently loosens a rule.
#   `sqlgate policy check` reports the same problems.
package sqlgate.lint

import data.sqlgate.config
import data.sqlgate.lib.denylist
import data.sqlgate.lib.hours

_config_keys := {"routes", "events", "business_hours", "break_glass", "deny", "nats", "sql_credentials"}

_route_keys := {
	"groups", "roles", "limits", "business_hours", "mfa", "max_auth_age",
	"break_glass", "max_rows", "timeout_ms", "redact_params",
}

_limit_keys := {"group", "role", "param", "min", "max"}

_event_keys := {"groups", "roles"}

_business_hours_keys := {"timezone", "days", "start", "end"}

_weekdays := {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

_break_glass_keys := {"group", "min_reason_length"}

_deny_keys := {"principals", "groups", "routes", "reason"}

_sql_keys := {"group", "database", "roles", "max_ttl"}

problems contains sprintf("config: unknown key %q", [key]) if {
	some key, _ in config
	not key in _config_keys
}

# Routes.

problems contains "config.routes: must be an object keyed by route subject" if {
	not is_object(object.get(config, "routes", {}))
}

problems contains sprintf("routes.%s: must be an object", [subject]) if {
	some subject, route in _routes
	not is_object(route)
}

problems contains sprintf("routes.%s: unknown key %q", [subject, key]) if {
	some subject, route in _routes
	is_object(route)
	some key, _ in route
	not key in _route_keys
}

problems contains sprintf("routes.%s.%s: must be a list of strings", [subject, key]) if {
	some subject, route in _routes
	some key in ["groups", "roles", "redact_params"]
	value := route[key]
	not _strings(value)
}

problems contains sprintf("routes.%s.%s: must be true or false", [subject, key]) if {
	some subject, route in _routes
	some key in ["business_hours", "mfa", "break_glass"]
	value := route[key]
	not is_boolean(value)
}

# The engine refuses integer obligations above 2147483647 on every decision.
problems contains sprintf("routes.%s.%s: must be a whole number from 0 to %d", [subject, key, _max_int32]) if {
	some subject, route in _routes
	some key in ["max_rows", "timeout_ms"]
	value := route[key]
	not _int32(value)
}

problems contains sprintf("routes.%s.max_auth_age: must be a positive duration such as \"1h\"", [subject]) if {
	some subject, route in _routes
	not _duration(object.get(route, "max_auth_age", "1s"))
}

problems contains sprintf("routes.%s.limits: must be a list", [subject]) if {
	some subject, route in _routes
	not is_array(object.get(route, "limits", []))
}

problems contains sprintf("routes.%s.limits[%d]: %s", [subject, i, msg]) if {
	some subject, route in _routes
	is_array(route.limits)
	some i, limit in route.limits
	some msg in _limit_problems(limit)
}

# A limit applies to callers whose access comes from its group or role: a
# group or role the route does not grant (a typo, a different case, a role
# listed under groups) would never be enforced.
problems contains sprintf("routes.%s.limits[%d].%s: %s is not in the route's %s (%s)", [subject, i, kind, limit[kind], key, _names_text(route, key)]) if {
	some subject, route in _routes
	is_array(route.limits)
	some i, limit in route.limits
	some kind, key in _limit_grantees
	is_string(limit[kind])
	_strings(object.get(route, key, []))
	not limit[kind] in object.get(route, key, [])
}

# _limit_grantees maps a limit's key to the route's list it must name a member of.
_limit_grantees := {"group": "groups", "role": "roles"}

problems contains sprintf("routes.%s: business_hours needs config.business_hours", [subject]) if {
	some subject, route in _routes
	route.business_hours == true
	not config.business_hours
}

problems contains sprintf("routes.%s: break_glass needs config.break_glass", [subject]) if {
	some subject, route in _routes
	route.break_glass == true
	not config.break_glass
}

_limit_problems(limit) := {"must be an object"} if {
	not is_object(limit)
} else := (((unknown | strings) | holder) | numbers) | bounds if {
	unknown := {sprintf("unknown key %q", [key]) |
		some key, _ in limit
		not key in _limit_keys
	}
	strings := {"param must be a string" |
		not is_string(object.get(limit, "param", null))
	} | {sprintf("%s must be a string", [key]) |
		some key in ["group", "role"]
		value := limit[key]
		not is_string(value)
	}
	holder := {"needs a group or a role" |
		not "group" in object.keys(limit)
		not "role" in object.keys(limit)
	} | {"names both a group and a role: a limit applies to one of them" |
		"group" in object.keys(limit)
		"role" in object.keys(limit)
	}
	numbers := {sprintf("%s must be a number", [key]) |
		some key in ["min", "max"]
		value := limit[key]
		not is_number(value)
	}
	bounds := {"needs min or max" |
		not "min" in object.keys(limit)
		not "max" in object.keys(limit)
	} | {"min is larger than max" | limit.min > limit.max}
}

# Events. Whether a subject is an emit subject of the route catalog is
# checked against the catalog (`sqlgate policy check --routes`, and every load
# of the daemon).

problems contains "config.events: must be an object keyed by emit subject" if {
	not is_object(object.get(config, "events", {}))
}

problems contains sprintf("events.%s: must be an object", [subject]) if {
	some subject, grant in _events
	not is_object(grant)
}

problems contains sprintf("events.%s: unknown key %q", [subject, key]) if {
	some subject, grant in _events
	is_object(grant)
	some key, _ in grant
	not key in _event_keys
}

problems contains sprintf("events.%s.%s: must be a list of strings", [subject, key]) if {
	some subject, grant in _events
	some key in ["groups", "roles"]
	value := grant[key]
	not _strings(value)
}

# The broker grants only the catalog's emit subjects, one by one: a wildcard
# would grant nothing.
problems contains sprintf("events.%s: must be one emit subject, without wildcards or spaces", [subject]) if {
	some subject, _ in _events
	not _concrete_subject(subject)
}

# Business hours.

problems contains "business_hours: must be an object" if {
	not is_object(object.get(config, "business_hours", {}))
}

problems contains sprintf("business_hours: unknown key %q", [key]) if {
	is_object(config.business_hours)
	some key, _ in config.business_hours
	not key in _business_hours_keys
}

problems contains "business_hours.timezone: must be an IANA time zone such as \"Europe/Berlin\"" if {
	is_object(config.business_hours)
	not time.clock([0, object.get(config.business_hours, "timezone", null)])
}

problems contains "business_hours.days: must be a list of weekday names such as Monday" if {
	is_object(config.business_hours)
	not _weekday_list(object.get(config.business_hours, "days", null))
}

problems contains sprintf("business_hours.%s: must be a time such as \"08:00\"", [key]) if {
	config.business_hours
	some key in ["start", "end"]
	not hours.minute_of_day(object.get(config.business_hours, key, null))
}

problems contains "business_hours: start must be before end" if {
	hours.minute_of_day(config.business_hours.start) >= hours.minute_of_day(config.business_hours.end)
}

# Break glass.

problems contains "break_glass: must be an object" if {
	not is_object(object.get(config, "break_glass", {}))
}

problems contains sprintf("break_glass: unknown key %q", [key]) if {
	is_object(config.break_glass)
	some key, _ in config.break_glass
	not key in _break_glass_keys
}

problems contains "break_glass.group: must be a group name" if {
	is_object(config.break_glass)
	not is_string(object.get(config.break_glass, "group", null))
}

problems contains "break_glass.min_reason_length: must be a whole number of at least 0" if {
	is_object(config.break_glass)
	not _count(object.get(config.break_glass, "min_reason_length", null))
}

# Deny list.

problems contains "deny: must be a list" if {
	not is_array(object.get(config, "deny", []))
}

# An entry that is not an object, e.g. a bare e-mail address written without
# `principals:`. (Should such a policy be served anyway, lib/denylist treats
# the entry as matching everyone.)
problems contains sprintf("deny[%d]: must be an object", [i]) if {
	some i, entry in _deny
	not is_object(entry)
}

problems contains sprintf("deny[%d]: unknown key %q", [i, key]) if {
	some i, entry in _deny
	is_object(entry)
	some key, _ in entry
	not key in _deny_keys
}

problems contains sprintf("deny[%d].%s: must be a list of strings", [i, key]) if {
	some i, entry in _deny
	some key in ["principals", "groups", "routes"]
	value := entry[key]
	not _strings(value)
}

# Principals are named by subject: an e-mail address (preferred_username, upn,
# an unverified email claim) can be changed by the user or an administrator,
# so it would not keep a renamed account on the list. lib/denylist matches no
# e-mail address (and treats such an entry as matching everyone).
problems contains sprintf("deny[%d].principals[%d]: %s looks like an e-mail address, which the user or an administrator can change: list the principal's subject (or \"<issuer> <subject>\") as sqlgate whoami shows it", [i, j, p]) if {
	some i, entry in _deny
	is_object(entry)
	_strings(entry.principals)
	some j, p in entry.principals
	denylist.email_shaped(p)
}

# A deny entry names routes of config.routes: one it does not list is most
# likely a misspelt route, which left the route it meant open. (A route that a
# policy's own rules grant is listed there too, without groups, so that the
# deny list, which removes only listed routes from NATS credentials, and its
# MFA and obligations apply to it.)
problems contains sprintf("deny[%d].routes[%d]: %s is not a route of config.routes: a deny entry names listed routes (list a route your own rules grant there too)", [i, j, subject]) if {
	some i, entry in _deny
	is_object(entry)
	_strings(entry.routes)
	is_object(_routes)
	some j, subject in entry.routes
	not subject in object.keys(_routes)
}

# An empty routes list matches no route (leaving routes out matches all).
problems contains sprintf("deny[%d].routes: is empty, so the entry refuses nothing: list routes, or leave routes out to refuse everything", [i]) if {
	some i, entry in _deny
	is_object(entry)
	entry.routes == []
}

problems contains sprintf("deny[%d].reason: must be a string", [i]) if {
	some i, entry in _deny
	is_object(entry)
	not is_string(object.get(entry, "reason", ""))
}

# Credentials.

problems contains "nats: must be an object" if {
	not is_object(object.get(config, "nats", {}))
}

problems contains sprintf("nats: unknown key %q", [key]) if {
	is_object(config.nats)
	some key, _ in config.nats
	key != "ttl"
}

problems contains "nats.ttl: must be a positive duration such as \"15m\"" if {
	is_object(config.nats)
	not _duration(object.get(config.nats, "ttl", null))
}

problems contains sprintf("nats.ttl: must be at most %s (366 days)", [_max_ttl]) if {
	_too_long(config.nats.ttl)
}

problems contains "sql_credentials: must be a list" if {
	not is_array(object.get(config, "sql_credentials", []))
}

problems contains sprintf("sql_credentials[%d]: must be an object", [i]) if {
	some i, grant in _sql_credentials
	not is_object(grant)
}

problems contains sprintf("sql_credentials[%d]: unknown key %q", [i, key]) if {
	some i, grant in _sql_credentials
	is_object(grant)
	some key, _ in grant
	not key in _sql_keys
}

problems contains sprintf("sql_credentials[%d].%s: must be a string", [i, key]) if {
	some i, grant in _sql_credentials
	is_object(grant)
	some key in ["group", "database"]
	not is_string(object.get(grant, key, null))
}

problems contains sprintf("sql_credentials[%d].roles: must be a list of strings", [i]) if {
	some i, grant in _sql_credentials
	is_object(grant)
	not _strings(object.get(grant, "roles", null))
}

problems contains sprintf("sql_credentials[%d].max_ttl: must be a positive duration such as \"1h\"", [i]) if {
	some i, grant in _sql_credentials
	is_object(grant)
	not _duration(object.get(grant, "max_ttl", null))
}

problems contains sprintf("sql_credentials[%d].max_ttl: must be at most %s (366 days)", [i, _max_ttl]) if {
	some i, grant in _sql_credentials
	_too_long(grant.max_ttl)
}

# The collections iterated below, when they have the right shape (a wrong
# shape is reported once, above).
_routes := config.routes if is_object(config.routes)

_events := config.events if is_object(config.events)

_deny := config.deny if is_array(config.deny)

_sql_credentials := config.sql_credentials if is_array(config.sql_credentials)

_strings(value) if {
	is_array(value)
	every e in value {
		is_string(e)
	}
}

# _max_int32 is the largest max_rows or timeout_ms the engine accepts.
_max_int32 := 2147483647

# _max_ttl is the longest credential lifetime the engine accepts.
_max_ttl := "8784h"

_too_long(value) if time.parse_duration_ns(value) > time.parse_duration_ns(_max_ttl)

# _names_text(route, key) lists the route's groups or roles (key) for messages.
_names_text(route, key) := concat(", ", route[key]) if {
	count(route[key]) > 0
} else := "none"

_int32(value) if {
	_count(value)
	value <= _max_int32
}

_count(value) if {
	is_number(value)
	value >= 0
	round(value) == value
}

_duration(value) if {
	is_string(value)
	time.parse_duration_ns(value) > 0
}

# _concrete_subject(s): s is a NATS subject without wildcards: tokens of
# printable characters other than space, separated by single dots.
_concrete_subject(s) if {
	regex.match(`^[!-~]+$`, s)
	every token in split(s, ".") {
		token != ""
		token != "*"
		token != ">"
	}
}

_weekday_list(value) if {
	_strings(value)
	every day in value {
		day in _weekdays
	}
}
