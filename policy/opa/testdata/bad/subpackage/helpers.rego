package sqlgate.call.helpers

admin if "admins" in input.principal.groups
