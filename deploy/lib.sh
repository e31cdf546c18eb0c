# Shared by deploy.sh and rollback.sh: the environment's parameters, and running commands that
# a dry run prints instead (every command is printed either way, so a run can be read back).

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

# Prints a command as it would be typed; runs it unless this is a dry run.
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [[ $DRY_RUN == false ]]; then "$@"; fi
}

# capture VAR PLACEHOLDER CMD...: VAR is CMD's output, or PLACEHOLDER in a dry run.
capture() {
    local var=$1 placeholder=$2; shift 2
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [[ $DRY_RUN == false ]]; then
        local out
        out=$("$@") || die "$1 failed (above)"
        printf -v "$var" '%s' "$out"
    else
        printf -v "$var" '%s' "$placeholder"
    fi
}

# Reads deploy/environments/<env>.params into the associative array PARAM.
load_params() {
    local file=deploy/environments/$1.params line
    [[ -f $file ]] || die "no $file"
    declare -gA PARAM=()
    while IFS= read -r line || [[ -n $line ]]; do
        [[ -z $line || $line == \#* ]] && continue
        PARAM[${line%%=*}]=${line#*=}
    done < "$file"
    REGION=${PARAM[Region]:-}
    [[ -n $REGION ]] || die "$file sets no Region"
    if [[ $DRY_RUN == false ]]; then
        for key in "${!PARAM[@]}"; do
            [[ ${PARAM[$key]} != *REPLACE* ]] || die "$file: $key is still a placeholder (${PARAM[$key]})"
        done
    fi
}

stack_name() { printf '%s-aidlc-%s' "$ENV_NAME" "$1"; }
