package vmcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/coder/websocket"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func newExecCmd(g *cmdutil.Globals) *cobra.Command {
	var input string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "exec NAME -- COMMAND [ARG...]",
		Short: "Run a command in the guest through its guest agent",
		Long: `Run a command in the VM's guest through qemu-guest-agent (as 'qm guest exec'
does), print what it wrote to stdout and stderr, and exit with its exit code.`,
		Example: `  vdc vm exec web1 -- uname -a
  vdc vm exec web1 --input config.txt -- /bin/sh -c 'cat > /etc/app.conf'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("give the VM and the command: vdc vm exec NAME -- COMMAND [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 || timeout > time.Hour {
				return fmt.Errorf("--timeout must be between 1s and 1h, got %s", timeout)
			}
			req := api.ExecRequest{Command: args[1:], TimeoutSeconds: int(math.Ceil(timeout.Seconds()))}
			if input != "" {
				var b []byte
				var err error
				if input == "-" {
					b, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20+1))
				} else {
					b, err = os.ReadFile(input)
				}
				if err != nil {
					return fmt.Errorf("--input: %w", err)
				}
				if len(b) > 1<<20 {
					return fmt.Errorf("--input is larger than 1 MiB")
				}
				req.Input = string(b)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			res, err := c.Exec(cmd.Context(), args[0], req)
			if err != nil {
				return fmt.Errorf("exec in vm %s: %w", args[0], err)
			}
			if g.JSONOutput() {
				enc := json.NewEncoder(g.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprint(g.Stdout, res.Stdout)
			fmt.Fprint(g.Stderr, res.Stderr)
			if res.Truncated {
				fmt.Fprintln(g.Stderr, "vdc: the output was truncated by the guest agent")
			}
			if res.Signal != 0 {
				fmt.Fprintf(g.Stderr, "vdc: killed by signal %d\n", res.Signal)
				return cmdutil.ExitCode(128 + res.Signal)
			}
			if res.ExitCode != 0 {
				return cmdutil.ExitCode(res.ExitCode)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "file to feed to the command's stdin (- for this command's stdin)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long the command may run")
	return cmd
}

// detachKey (Ctrl-]) ends a console session, as in telnet and virsh.
const detachKey = 0x1d

func newConsoleCmd(g *cmdutil.Globals) *cobra.Command {
	var logOnly, vnc bool
	var logBytes int
	var listen string
	cmd := &cobra.Command{
		Use:   "console NAME",
		Short: "Attach to a VM's serial console (Ctrl-] detaches), print its recent output, or open its VNC display to a local viewer",
		Long: `Attach to the VM's serial console (Ctrl-] detaches), or with --log print its
recent output. With --vnc, open the VM's VNC display on a loopback port of
this machine for a VNC viewer, until Ctrl-C: the display goes through the
server (authenticated) and the host agent (mutual TLS) to a unix socket of
QEMU; no host listens for VNC on the network.`,
		Example: `  vdc vm console web1
  vdc vm console web1 --log
  vdc vm console web1 --vnc                        # prints the address for vncviewer
  vdc vm console web1 --vnc --listen 127.0.0.1:5901`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("listen") && !vnc {
				return fmt.Errorf("--listen is for --vnc")
			}
			if vnc && logOnly {
				return fmt.Errorf("--vnc and --log contradict each other: give one")
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if vnc {
				return vncProxy(ctx, c, args[0], listen, g.Stdout, g.Stderr)
			}
			if logOnly {
				b, err := c.ConsoleLog(ctx, args[0], logBytes)
				if err != nil {
					return fmt.Errorf("console log of vm %s: %w", args[0], err)
				}
				_, err = g.Stdout.Write(b)
				return err
			}
			ws, err := c.Console(ctx, args[0])
			if err != nil {
				return fmt.Errorf("console of vm %s: %w", args[0], err)
			}
			defer ws.CloseNow()
			fmt.Fprintf(g.Stderr, "Connected to the console of vm %s. Detach with Ctrl-].\r\n", args[0])
			if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
				old, err := term.MakeRaw(fd)
				if err == nil {
					defer term.Restore(fd, old)
				}
			}
			err = consoleSession(ctx, ws, os.Stdin, g.Stdout)
			fmt.Fprintf(g.Stderr, "\r\nDetached from vm %s.\r\n", args[0])
			return err
		},
	}
	cmd.Flags().BoolVar(&logOnly, "log", false, "print the console's recent output instead of attaching")
	cmd.Flags().IntVar(&logBytes, "bytes", 64<<10, "with --log: at most this many bytes, from the end")
	cmd.Flags().BoolVar(&vnc, "vnc", false, "open the VM's VNC display on a local port for a VNC viewer, until Ctrl-C")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "with --vnc: the loopback address and port to listen on (port 0: any free one)")
	return cmd
}

// vncProxy serves a VM's VNC display on a loopback port: each viewer that
// connects gets its own websocket to the server. The port has no password,
// so only loopback addresses are allowed.
func vncProxy(ctx context.Context, c *client.Client, vm, listen string, stdout, stderr io.Writer) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q: give a loopback address (127.0.0.1:PORT or [::1]:PORT): the port has no password, and whoever reaches it sees and drives the VM's screen", listen)
	}
	// The display must answer before a viewer is told to connect.
	ws, err := c.VNC(ctx, vm)
	if err != nil {
		return fmt.Errorf("VNC display of vm %s: %w", vm, err)
	}
	ws.CloseNow()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("VNC display of vm %s: %w", vm, err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	fmt.Fprintf(stdout, "VNC display of vm %s on %s (vncviewer %s::%d); Ctrl-C ends it\n", vm, addr, addr.IP, addr.Port)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("VNC display of vm %s: %w", vm, err)
		}
		go func() {
			defer conn.Close()
			ws, err := c.VNC(ctx, vm)
			if err != nil {
				fmt.Fprintf(stderr, "vdc: VNC display of vm %s: %s\n", vm, cmdutil.SafeText(err.Error()))
				return
			}
			defer ws.CloseNow()
			agent.Bridge(ctx, ws, conn)
		}()
	}
}

// consoleSession relays a terminal to a console websocket until the user
// presses the detach key, the input ends or the VM's console closes.
func consoleSession(ctx context.Context, ws *websocket.Conn, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				errc <- err
				return
			}
			if _, err := out.Write(b); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				chunk := buf[:n]
				if i := bytes.IndexByte(chunk, detachKey); i >= 0 {
					if i > 0 {
						_ = ws.Write(ctx, websocket.MessageBinary, chunk[:i])
					}
					errc <- nil
					return
				}
				if err := ws.Write(ctx, websocket.MessageBinary, chunk); err != nil {
					errc <- err
					return
				}
			}
			if err != nil {
				errc <- nil
				return
			}
		}
	}()
	err := <-errc
	_ = ws.Close(websocket.StatusNormalClosure, "detached")
	if err == nil || errors.Is(err, context.Canceled) || websocket.CloseStatus(err) != -1 {
		return nil
	}
	return err
}
