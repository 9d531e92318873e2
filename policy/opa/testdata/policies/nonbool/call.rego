package sqlgate.call

# allow must be a boolean: a string is a malformed decision, hence a deny.
allow := "yes"
