package sqlgate.call

default allow := true

# Each obligation below is malformed for some input (see the cases).
max_rows := -1 if input.params.case == "negative_rows"

timeout_ms := 2.5 if input.params.case == "fractional_timeout"

redact_params := "note" if input.params.case == "redact_string"

reasons := [1, 2] if input.params.case == "reasons_numbers"
