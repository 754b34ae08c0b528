package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	apexv1 "github.com/apex-grpc/apex-grpc/examples/go/gen/apex/v1"
)

// defaultEndpoint is Apex's former endpoint (TLS on port 443), the default for
// compatibility: it may no longer answer apex.v1 (apex-grpc serve hosts the contract).
const defaultEndpoint = "constellation.api.cloud.macrocosmos.ai:443"

// bearerKey sends "authorization: Bearer <key>" on every call.
type bearerKey struct {
	key    string
	secure bool
}

func (b bearerKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.key}, nil
}

// RequireTransportSecurity is false only for plaintext, which the caller
// chose with MACROCOSMOS_USE_HTTPS (the local server, typically).
func (b bearerKey) RequireTransportSecurity() bool { return b.secure }

// apiKeyFromEnv is APEX_API_KEY, then MACROCOSMOS_API_KEY (as the Python SDK).
func apiKeyFromEnv() (string, error) {
	for _, name := range []string{"APEX_API_KEY", "MACROCOSMOS_API_KEY"} {
		if key := strings.TrimSpace(os.Getenv(name)); key != "" {
			return key, nil
		}
	}
	return "", errors.New("no API key: set APEX_API_KEY")
}

// useTLS reads MACROCOSMOS_USE_HTTPS: unset, empty, true/1/yes/y/on mean TLS.
func useTLS() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("MACROCOSMOS_USE_HTTPS"))) {
	case "", "true", "1", "yes", "y", "on":
		return true
	}
	return false
}

// endpoint reads MACROCOSMOS_BASE_URL as the Python SDK does: host, host:port,
// http://host:port (plaintext) or https://host (TLS); a bare host gets port 443.
// Without a scheme, MACROCOSMOS_USE_HTTPS decides.
func endpoint() (target string, secure bool) {
	target, secure = strings.TrimSpace(os.Getenv("MACROCOSMOS_BASE_URL")), useTLS()
	if target == "" {
		return defaultEndpoint, secure
	}
	lower := strings.ToLower(target)
	switch {
	case strings.HasPrefix(lower, "https://"):
		target, secure = target[len("https://"):], true
	case strings.HasPrefix(lower, "http://"):
		target, secure = target[len("http://"):], false
	}
	target = strings.TrimRight(target, "/")
	if _, _, err := net.SplitHostPort(target); err != nil {
		target = net.JoinHostPort(strings.Trim(target, "[]"), "443")
	}
	return target, secure
}

// dial connects to MACROCOSMOS_BASE_URL (see endpoint; default: the public
// endpoint) and returns the generated ApexService client using apiKey.
func dial(apiKey string) (*grpc.ClientConn, apexv1.ApexServiceClient, error) {
	target, secure := endpoint()
	transport := grpc.WithInsecure() // plaintext, for the local server
	if secure {
		transport = grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{}))
	}
	// grpc.Dial and WithInsecure are what grpc-go 1.33 (Debian 12) offers;
	// newer releases deprecate them for grpc.NewClient and
	// credentials/insecure, but still compile them.
	conn, err := grpc.Dial(target, transport,
		grpc.WithPerRPCCredentials(bearerKey{key: apiKey, secure: secure}))
	if err != nil {
		return nil, nil, err
	}
	return conn, apexv1.NewApexServiceClient(conn), nil
}
