# A misspelt entry package: sqlgate.call is not defined, so every call would
# be denied with "the policy does not decide call".
package sqlgate.calls

default allow := false

allow if "sales" in input.principal.groups
