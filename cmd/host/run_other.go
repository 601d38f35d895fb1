//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return errors.New("host run needs Linux; this build has the engine commands only")
}
