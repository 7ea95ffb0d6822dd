// Package tlsfiles turns the PEM files an operator configures into TLS
// configurations: for sluice as a client (of Kafka) and as a server
// (ingest). It owns the checks that make a mistake in those files a clear
// error at start rather than a handshake failure later.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Client names the files of a client's TLS configuration.
type Client struct {
	// CAFile is the PEM bundle of the authorities that sign the server's
	// certificate; empty: the system's.
	CAFile string
	// CertFile and KeyFile are the client's own certificate and key, for
	// servers that ask for one (mutual TLS); both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked against the server's
	// certificate; empty: the host of the address dialled.
	ServerName string
}

// Config reads the files. The server's certificate is always verified.
func (c Client) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := readPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("cert_file and key_file go together: give both or neither")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Server names the files of a server's TLS configuration.
type Server struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the server require a client
	// certificate signed by one of these authorities.
	ClientCAFile string
}

// Config reads the files.
func (s Server) Config() (*tls.Config, error) {
	if s.CertFile == "" || s.KeyFile == "" {
		return nil, errors.New("cert_file and key_file are required")
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file/key_file: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.ClientCAFile != "" {
		pool, err := readPool(s.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func readPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
