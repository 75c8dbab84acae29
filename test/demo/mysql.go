package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// MySQL reaches the task's server with the real mariadb client (the seed's
// MySQL Workbench): the world's instances share this machine's network, so
// the task listens on 127.0.0.1:3306.
type MySQL struct {
	Host     string // default 127.0.0.1
	Port     int    // default 3306
	User     string // default root
	Password string
}

// ErrQuery is wrapped when the client exits non-zero (server not
// answering, bad credentials, SQL error); the message carries its stderr.
var ErrQuery = errors.New("mariadb client failed")

// ErrNoPassword: the task definition sets no MYSQL_ROOT_PASSWORD.
var ErrNoPassword = errors.New("no MYSQL_ROOT_PASSWORD in the task definition")

// TaskDefinitionPassword reads MYSQL_ROOT_PASSWORD from the task
// definition file the walkthrough wrote (mysql-taskdef.json).
func TaskDefinitionPassword(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var def struct {
		ContainerDefinitions []struct {
			Environment []struct{ Name, Value string } `json:"environment"`
		} `json:"containerDefinitions"`
	}
	if err := json.Unmarshal(raw, &def); err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	for _, c := range def.ContainerDefinitions {
		for _, e := range c.Environment {
			if e.Name == "MYSQL_ROOT_PASSWORD" {
				return e.Value, nil
			}
		}
	}
	return "", fmt.Errorf("%s: %w", filepath.Base(path), ErrNoPassword)
}

// Run feeds sql to the client and returns what it prints. args are extra
// client options (--table, --batch...).
func (m MySQL) Run(ctx context.Context, sql string, args ...string) (string, error) {
	host, port, user := m.Host, m.Port, m.User
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		port = 3306
	}
	if user == "" {
		user = "root"
	}
	all := append([]string{"--protocol=TCP", "--host=" + host, "--port=" + strconv.Itoa(port), "--user=" + user,
		"--connect-timeout=3"}, args...)
	cmd := exec.CommandContext(ctx, "mariadb", all...)
	// The password travels in the environment, not on a command line
	// every process can read.
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+m.Password)
	cmd.Stdin = strings.NewReader(sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %w: %s", ErrQuery, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Answers is a Check that waits until the server answers a query.
func (m MySQL) Answers() Check {
	return func(ctx context.Context) (bool, string, error) {
		out, err := m.Run(ctx, "SELECT VERSION();", "--batch", "--skip-column-names")
		if err != nil {
			return false, firstLine(err.Error()), nil
		}
		return true, "server " + strings.TrimSpace(out) + " answers", nil
	}
}

// Pets returns the rows of rexraydb.pets as "name breed" strings.
func (m MySQL) Pets(ctx context.Context) ([]string, error) {
	out, err := m.Run(ctx, "SELECT name, breed FROM rexraydb.pets;", "--batch", "--skip-column-names")
	if err != nil {
		return nil, err
	}
	var rows []string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if line != "" {
			rows = append(rows, strings.ReplaceAll(line, "\t", " "))
		}
	}
	return rows, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
