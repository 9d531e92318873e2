package sqlgate.nats

default allow := false

allow if count(pub) > 0

pub contains "orders.v1.get"

# A known emit subject, a misspelt one, and a computed one (not checked).
sub contains "orders.v1.created"

sub contains "orders.v1.craeted"

sub contains subject if {
	some group in input.principal.groups
	subject := concat(".", ["team", group])
}
