package main

import (
	"context"
	"errors"
)

func cmdPolicyTest(context.Context, *env, []string) error   { return errors.New("TODO") }
func cmdPolicyEval(context.Context, *env, []string) error   { return errors.New("TODO") }
func cmdPolicyCheck(context.Context, *env, []string) error  { return errors.New("TODO") }
func cmdPolicyReplay(context.Context, *env, []string) error { return errors.New("TODO") }
