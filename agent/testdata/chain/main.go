// Command chain is the agent's end-to-end helper. Copied under several
// names, it acts by the name it runs as: thunderbird, firefox and evince
// each start the next (thunderbird -> firefox -> evince -> bash), waiting
// for it; bash tries four things a guarded process must not do and prints
// one line per attempt: "NAME ok" or "NAME ERROR". With -wait FILE it
// first waits until FILE exists (the end-to-end test restarts the agent
// meanwhile), the whole chain still running.
//
//	chain DIR        DIR/sys holds the copies; DIR/home/u the user's files
//	chain -exec NAME|PATH [ARG...] DIR
//	chain -serve CTL DIR
//
// With -exec it replaces its own image with DIR/sys/NAME at once (execve
// without a new process): evince -exec bash is a guarded app that becomes
// a shell in place, which must stay guarded.
//
// With -serve it is a launcher: for each line "NAME OUT [ARG...]" read
// from the FIFO CTL/in it runs DIR/sys/NAME ARG... DIR with its output to
// OUT, then creates OUT.done (in the background: several may run). Started as an orphan before the agent, it is a process
// of unknown ancestry in system space: the system-zone parent the tests
// start chains from.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var next = map[string]string{"thunderbird": "firefox", "firefox": "evince", "evince": "bash"}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "-serve" {
		serve(os.Args[2], os.Args[3])
		return
	}
	dir := os.Args[len(os.Args)-1]
	me := filepath.Base(os.Args[0])
	if len(os.Args) > 3 && os.Args[1] == "-exec" {
		prog := os.Args[2]
		if !filepath.IsAbs(prog) {
			prog = filepath.Join(dir, "sys", prog)
		}
		err := syscall.Exec(prog, append([]string{prog}, os.Args[3:]...), os.Environ())
		fmt.Printf("exec-%s %v\n", os.Args[2], err)
		return
	}
	if n, ok := next[me]; ok {
		cmd := exec.Command(filepath.Join(dir, "sys", n), os.Args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("start-%s %v\n", n, err)
		}
		return
	}
	if len(os.Args) > 3 && os.Args[1] == "-wait" {
		for {
			if _, err := os.Stat(os.Args[2]); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	home := filepath.Join(dir, "home", "u")
	try := func(name string, f func() error) {
		if err := f(); err != nil {
			fmt.Printf("%s %v\n", name, err)
			return
		}
		fmt.Printf("%s ok\n", name)
	}
	try("exec-user-space", func() error { return exec.Command(filepath.Join(home, "tool")).Run() })
	try("write-system-space", func() error {
		f, err := os.OpenFile(filepath.Join(dir, "sys", "etc", "config"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString("overwritten\n")
		return err
	})
	try("read-private", func() error { _, err := os.ReadFile(filepath.Join(home, ".ssh", "id_rsa")); return err })
	try("load-user-library", func() error {
		f, err := os.Open(filepath.Join(home, "lib.so"))
		if err != nil {
			return err
		}
		return f.Close()
	})
}

func serve(ctl, dir string) {
	for {
		f, err := os.Open(filepath.Join(ctl, "in"))
		if err != nil {
			return
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			go launch(dir, fields[0], fields[1], fields[2:])
		}
		f.Close()
	}
}

func launch(dir, name, out string, args []string) {
	o, err := os.Create(out)
	if err != nil {
		return
	}
	cmd := exec.Command(filepath.Join(dir, "sys", name), append(args, dir)...)
	cmd.Stdout, cmd.Stderr = o, o
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(o, "run-%s %v\n", name, err)
	}
	o.Close()
	os.WriteFile(out+".done", nil, 0o644)
}
