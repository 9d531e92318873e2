# METADATA
# description: |
#   Business-hours rules (data.sqlgate.config.business_hours): listed routes
#   may only be called on the configured days between start and end, in the
#   configured time zone, at the request's time.
package sqlgate.lib.hours

import data.sqlgate.config
import data.sqlgate.lib.request

# violations is non-empty when the requested route is restricted to business
# hours and the request falls outside them.
violations contains msg if {
	input.route.subject in config.business_hours.routes
	not within(request.now_ns)
	msg := sprintf(
		"%s may only be called during business hours (%s, %s-%s %s)",
		[input.route.subject, concat(", ", config.business_hours.days), config.business_hours.start, config.business_hours.end, _tz],
	)
}

# within(ns) reports whether the instant ns (Unix nanoseconds) falls within the
# configured business hours. A malformed configuration is never within.
within(ns) if {
	time.weekday([ns, _tz]) in config.business_hours.days
	[hour, minute, _] := time.clock([ns, _tz])
	now := (hour * 60) + minute
	now >= _minute_of_day(config.business_hours.start)
	now < _minute_of_day(config.business_hours.end)
}

_tz := object.get(config.business_hours, "timezone", "UTC")

_minute_of_day(hhmm) := (to_number(hour) * 60) + to_number(minute) if {
	[hour, minute] := split(hhmm, ":")
}
