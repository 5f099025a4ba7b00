package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// completionScripts hook a shell's completion to urfave/cli's: the shell
// runs the command line typed so far with --generate-bash-completion, and
// regmirror prints the commands and flags that may come next.
var completionScripts = map[string]string{
	"bash": `# bash completion for regmirror; install with
#   regmirror completion bash | sudo tee /etc/bash_completion.d/regmirror
_regmirror_complete() {
	local cur="${COMP_WORDS[COMP_CWORD]}" word candidates
	# After "--" the hook would be an argument and run the command itself.
	for word in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
		[[ "$word" == -- ]] && return 0
	done
	if [[ "$cur" == -* ]]; then
		# "-" lists every flag; "--" itself would end the flags.
		[[ "$cur" == -- ]] && cur=-
		candidates=$("${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
		cur="${COMP_WORDS[COMP_CWORD]}"
	else
		candidates=$("${COMP_WORDS[@]:0:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
}
complete -o bashdefault -o default -F _regmirror_complete regmirror
`,
	"zsh": `#compdef regmirror
# zsh completion for regmirror; install with
#   regmirror completion zsh > "${fpath[1]}/_regmirror"
_regmirror() {
	local cur=${words[CURRENT]}
	local -a candidates
	# After "--" the hook would be an argument and run the command itself.
	if (( ${words[(I)--]} > 0 && ${words[(I)--]} < CURRENT )); then
		_files
		return
	fi
	if [[ "$cur" == -* ]]; then
		# "-" lists every flag; "--" itself would end the flags.
		local ask=$cur
		[[ "$ask" == -- ]] && ask=-
		candidates=("${(@f)$(${words[1,CURRENT-1]} $ask --generate-bash-completion 2>/dev/null)}")
	else
		candidates=("${(@f)$(${words[1,CURRENT-1]} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ -n "${candidates[1]}" ]]; then
		_describe 'regmirror' candidates
	else
		_files
	fi
}
compdef _regmirror regmirror
`,
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "Load it in the current shell with: source <(regmirror completion bash)\n" +
			"or install it for every shell, see docs/operations.md.",
		Action: func(c *cli.Context) error {
			script, ok := completionScripts[c.Args().First()]
			if !ok || c.NArg() != 1 {
				return fmt.Errorf("say which shell: regmirror completion bash|zsh")
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}
