#!/usr/bin/env bash
# Deploys aidlc-auth to one environment: the eight stacks of deploy/cloudformation/ in order,
# each waited for (`aws cloudformation deploy`), the image built and pushed at step 6.
#
#   deploy/deploy.sh <staging|production> [--dry-run] [--image-tag TAG]
#
# --dry-run prints every command and parameter and calls neither AWS nor Docker (CI runs it).
# --image-tag deploys an image already in the repository (a rollback that CloudFormation keeps)
# instead of building the checked-out commit. Parameters: deploy/environments/<env>.params.
# Needs: aws (v2), docker, git, openssl. See deploy/README.md, the runbook.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

usage() { sed -n '5,7p' "$0" | sed 's/^# *//' >&2; exit 2; }
ENV_NAME="" DRY_RUN=false IMAGE_TAG=""
while (($#)); do
    case $1 in
        staging | production) ENV_NAME=$1 ;;
        --dry-run) DRY_RUN=true ;;
        --image-tag) IMAGE_TAG=${2:?--image-tag needs a tag}; shift ;;
        *) usage ;;
    esac
    shift
done
[[ -n $ENV_NAME ]] || usage
load_params "$ENV_NAME"
[[ $DRY_RUN == true ]] && echo "# dry run: nothing below is executed"

# The parameters a template declares: the keys under its top-level `Parameters:`.
template_params() {
    awk '/^Parameters:/ { p = 1; next } /^[^ #]/ { p = 0 } p && /^  [A-Za-z0-9]+:/ { sub(/:.*/, ""); sub(/^ +/, ""); print }' "$1"
}

# deploy_stack NN-name: the template with exactly the parameters it declares.
deploy_stack() {
    local template=deploy/cloudformation/$1.yaml name value overrides=()
    [[ -f $template ]] || die "no $template"
    for name in $(template_params "$template"); do
        case $name in
            EnvironmentName) value=$ENV_NAME ;;
            S3PrefixListId) value=$S3_PREFIX_LIST ;;
            ImageTag) value=$IMAGE_TAG ;;
            *)
                [[ -v PARAM[$name] ]] || die "$1 needs $name: add it to deploy/environments/$ENV_NAME.params"
                value=${PARAM[$name]} ;;
        esac
        overrides+=("$name=$value")
    done
    say "step ${1%%-*}: stack $(stack_name "$1")"
    run aws cloudformation deploy --region "$REGION" \
        --stack-name "$(stack_name "$1")" --template-file "$template" \
        --parameter-overrides "${overrides[@]}" \
        --capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
        --tags "Environment=$ENV_NAME" Service=aidlc-auth
}

stack_output() { # stack_output NN-name OutputKey PLACEHOLDER VAR
    capture "$4" "$3" aws cloudformation describe-stacks --region "$REGION" \
        --stack-name "$(stack_name "$1")" \
        --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue | [0]" --output text
}

# The key-encryption key must be 32 random bytes in base64, which CloudFormation cannot
# generate: set it once, on the first deploy (the tag records it; it is never replaced here,
# since data sealed with it would be lost).
ensure_key_encryption_key() {
    local secret=$ENV_NAME-aidlc-auth/key-encryption-key format
    say "key-encryption key ($secret)"
    capture format None aws secretsmanager describe-secret --region "$REGION" --secret-id "$secret" \
        --query "Tags[?Key=='aidlc:key-format'].Value | [0]" --output text
    [[ $format == base64-32 ]] && { echo "# already set"; return; }
    echo "+ aws secretsmanager put-secret-value --region $REGION --secret-id $secret --secret-string <32 random bytes, base64>"
    if [[ $DRY_RUN == false ]]; then
        aws secretsmanager put-secret-value --region "$REGION" --secret-id "$secret" \
            --secret-string "$(openssl rand -base64 32)" > /dev/null
    fi
    run aws secretsmanager tag-resource --region "$REGION" --secret-id "$secret" \
        --tags Key=aidlc:key-format,Value=base64-32
}

build_and_push_image() {
    local repository registry exists
    stack_output 06-registry RepositoryUri "000000000000.dkr.ecr.$REGION.amazonaws.com/$ENV_NAME-aidlc-auth" repository
    registry=${repository%%/*}
    if [[ -n $IMAGE_TAG ]]; then
        say "image: $repository:$IMAGE_TAG (already pushed)"
        run aws ecr describe-images --region "$REGION" --repository-name "${repository#*/}" --image-ids "imageTag=$IMAGE_TAG"
        return
    fi
    [[ $DRY_RUN == true || -z $(git status --porcelain) ]] \
        || die "uncommitted changes: the image is tagged with the commit, so deploy a committed tree"
    IMAGE_TAG=$(git rev-parse --short=12 HEAD)
    say "image: $repository:$IMAGE_TAG"
    # Tags are immutable: a commit already pushed is not built again.
    capture exists None aws ecr list-images --region "$REGION" --repository-name "${repository#*/}" \
        --query "imageIds[?imageTag=='$IMAGE_TAG'].imageTag | [0]" --output text
    if [[ $exists == "$IMAGE_TAG" ]]; then echo "# already in the repository"; return; fi
    echo "+ aws ecr get-login-password --region $REGION | docker login --username AWS --password-stdin $registry"
    if [[ $DRY_RUN == false ]]; then
        aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$registry"
    fi
    run docker build --platform linux/amd64 --tag "$repository:$IMAGE_TAG" .
    run docker push "$repository:$IMAGE_TAG"
}

deploy_stack 01-network
say "the region's S3 prefix list (the tasks reach S3 through the gateway endpoint)"
capture S3_PREFIX_LIST pl-00000000 aws ec2 describe-managed-prefix-lists --region "$REGION" \
    --filters "Name=prefix-list-name,Values=com.amazonaws.$REGION.s3" \
    --query 'PrefixLists[0].PrefixListId' --output text
deploy_stack 02-security-groups
deploy_stack 03-data
ensure_key_encryption_key
deploy_stack 04-iam
deploy_stack 05-endpoints
deploy_stack 06-registry
build_and_push_image
deploy_stack 07-service
run aws ecs wait services-stable --region "$REGION" \
    --cluster "$ENV_NAME-aidlc-cluster" --services "$ENV_NAME-aidlc-auth-service"
deploy_stack 08-edge
stack_output 02-security-groups LoadBalancerDnsName "$ENV_NAME-aidlc-alb-0000000000.$REGION.elb.amazonaws.com" ALB_DNS
say "deployed $IMAGE_TAG to $ENV_NAME"
echo "load balancer: $ALB_DNS (point ${PARAM[PublicUrl]#https://} at it); after-deploy checks: deploy/README.md"
