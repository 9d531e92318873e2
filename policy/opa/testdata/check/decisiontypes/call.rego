package sqlgate.call

# Decision keys whose values are computed, of a type the engine refuses.
allow := lower("TRUE")

default max_rows := 100

max_rows := input.params.rows if input.params.rows >= 0

redact_params := concat(",", ["note", "card"])

reasons contains count(input.principal.groups)

reasons contains "checked"
