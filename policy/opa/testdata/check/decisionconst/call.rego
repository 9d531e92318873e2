package sqlgate.call

# Constant decision values the engine refuses at every decision.
allow := "true"

max_rows := -5

redact_params := "note"

timeout_ms := 100 if input.params.fast == true else := 1.5

reasons contains "fine"
