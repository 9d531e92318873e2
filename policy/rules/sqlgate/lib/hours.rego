# METADATA
# description: |
#   Business hours (data.sqlgate.config.business_hours): routes with
#   business_hours: true may only be called on the configured days between
#   start and end, in the configured time zone, at the request's time.
package sqlgate.lib.hours

import data.sqlgate.config
import data.sqlgate.lib.request

# open(route) is true when route may be called at the request's time: it is
# not restricted to business hours, or the request falls within them.
open(route) if object.get(route, "business_hours", false) != true

open(_) if within(request.now_ns)

# closed(route) is the opposite of open(route).
closed(route) if not open(route)

# violations(route) explains closed(route).
violations(route) := {msg |
	closed(route)
	bh := config.business_hours
	msg := sprintf(
		"%s may only be called during business hours (%s, %s-%s %s)",
		[input.route.subject, concat(", ", bh.days), bh.start, bh.end, bh.timezone],
	)
}

# within(ns) reports whether the instant ns (Unix nanoseconds) falls within the
# configured business hours.
within(ns) if {
	bh := config.business_hours
	time.weekday([ns, bh.timezone]) in bh.days
	[hour, minute, _] := time.clock([ns, bh.timezone])
	now := (hour * 60) + minute
	now >= minute_of_day(bh.start)
	now < minute_of_day(bh.end)
}

# minute_of_day("HH:MM") is the minute of the day, undefined for other text.
minute_of_day(hhmm) := (to_number(hour) * 60) + to_number(minute) if {
	regex.match(`^([01][0-9]|2[0-3]):[0-5][0-9]$`, hhmm)
	[hour, minute] := split(hhmm, ":")
}
