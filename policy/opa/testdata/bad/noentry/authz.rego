package authz

default allow := false
