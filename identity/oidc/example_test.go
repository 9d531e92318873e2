package oidc_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/oidc"
)

// A verifier that trusts the development provider, verifying one of its
// tokens and refusing a damaged one.
func Example() {
	ctx := context.Background()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	idp, err := devidp.New(
		devidp.WithIssuer(srv.URL+"/idp"),
		devidp.WithUsers(devidp.User{Username: "alice", Password: rand.Text(), Email: "alice@example.com", Groups: []string{"sales"}}),
	)
	if err != nil {
		panic(err)
	}
	mux.Handle("/idp/", idp)

	v, err := oidc.Open(ctx, oidc.Config{Issuers: []oidc.IssuerConfig{{
		Name: "dev", Issuer: idp.Issuer(), Preset: oidc.PresetGeneric, Audiences: []string{"sqlgate"},
	}}}, nil)
	if err != nil {
		panic(err)
	}
	tok, _ := idp.TokenFor("alice", "")
	p, err := v.Verify(ctx, tok)
	fmt.Println(p.Email, p.Groups, err)

	// Damage the signature's first character (a cut token would be
	// malformed_token: only the canonical spelling of a segment passes).
	sig := strings.LastIndexByte(tok, '.') + 1
	damaged := tok[:sig] + map[bool]string{true: "B", false: "A"}[tok[sig] == 'A'] + tok[sig+1:]
	_, err = v.Verify(ctx, damaged)
	var ae *identity.AuthError
	fmt.Println(errors.Is(err, identity.ErrUnauthenticated), errors.As(err, &ae) && ae.Reason == oidc.ReasonInvalidSignature)
	// Output:
	// alice@example.com [sales] <nil>
	// true true
}
