package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// textWriter writes the human output of a command.
type textWriter struct {
	w   io.Writer
	err error
}

func (w *textWriter) linef(format string, args ...any) {
	if w.err == nil {
		_, w.err = fmt.Fprintf(w.w, format+"\n", args...)
	}
}

// table writes aligned columns; the header is upper-case.
func (w *textWriter) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// print writes v as -o asks: json and yaml encode v (a json.RawMessage is the server's reply
// as sent, field order kept), text calls text.
func (a *app) print(v any, text func(w *textWriter)) error {
	out := a.env.Stdout
	switch a.g.output {
	case "json", "yaml":
		data, err := encodeJSON(v, true)
		if err != nil {
			return err
		}
		if a.g.output == "yaml" {
			if data, err = yaml.JSONToYAML(data); err != nil {
				return fmt.Errorf("encode YAML: %w", err)
			}
			_, err = out.Write(data)
			return err
		}
		_, err = out.Write(append(data, '\n'))
		return err
	default:
		w := &textWriter{w: out}
		text(w)
		return w.err
	}
}

// encodeJSON encodes v, indented or on one line.
func encodeJSON(v any, indent bool) ([]byte, error) {
	raw, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("encode JSON: %w", err)
		}
	}
	var buf bytes.Buffer
	var err error
	if indent {
		err = json.Indent(&buf, raw, "", "  ")
	} else {
		err = json.Compact(&buf, raw)
	}
	if err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return buf.Bytes(), nil
}
