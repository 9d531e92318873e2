package sqlgate

# obligations of the call entry, written with Rego v1 ref heads
call.max_rows := 10

call.redact_params := {"note"}

call.max_row := 5 # typo: must be refused by the contract check
