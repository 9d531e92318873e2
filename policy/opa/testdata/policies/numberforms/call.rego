package sqlgate.call

# Obligations read from data.json, where numbers may be written in any JSON
# form: 1e2 and 2500.0 are whole numbers, 1.5e0 is not.
default allow := true

max_rows := data.limits[input.params.case].rows

timeout_ms := data.limits[input.params.case].timeout_ms
