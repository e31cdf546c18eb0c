#!/usr/bin/env bash
# The guide's recovery steps, for one environment:
#
#   deploy/rollback.sh <staging|production> service [--to TASK_DEFINITION] [--dry-run]
#   deploy/rollback.sh <staging|production> stack NN-name [--dry-run]
#
# service: the ECS service back to the previous revision of its task definition (or --to a
#   family:revision or ARN), waited until stable. CloudFormation still names the newer revision:
#   the script prints the deploy.sh --image-tag command that makes the stacks agree.
# stack: cancels a stack update in progress (step NN) and waits for its rollback.
# --dry-run prints every command and calls nothing. See deploy/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 2; }
ENV_NAME="" ACTION="" TARGET="" DRY_RUN=false
while (($#)); do
    case $1 in
        staging | production) ENV_NAME=$1 ;;
        service) ACTION=service ;;
        stack) ACTION=stack; TARGET=${2:-}; [[ -n $TARGET ]] || usage; shift ;;
        --to) TARGET=${2:?--to needs a task definition}; shift ;;
        --dry-run) DRY_RUN=true ;;
        *) usage ;;
    esac
    shift
done
[[ -n $ENV_NAME && -n $ACTION ]] || usage
load_params "$ENV_NAME"
[[ $DRY_RUN == true ]] && echo "# dry run: nothing below is executed"
CLUSTER=$ENV_NAME-aidlc-cluster
SERVICE=$ENV_NAME-aidlc-auth-service

rollback_service() {
    local current image
    say "service $SERVICE: current task definition"
    capture current "arn:aws:ecs:$REGION:000000000000:task-definition/$ENV_NAME-aidlc-auth:2" \
        aws ecs describe-services --region "$REGION" --cluster "$CLUSTER" --services "$SERVICE" \
        --query 'services[0].taskDefinition' --output text
    if [[ -z $TARGET ]]; then
        local revision=${current##*:}
        ((revision > 1)) || die "$current is the first revision: name one with --to"
        TARGET="${current%:*}:$((revision - 1))"
        TARGET=${TARGET##*/}
    fi
    say "service $SERVICE: back to $TARGET"
    run aws ecs update-service --region "$REGION" --cluster "$CLUSTER" --service "$SERVICE" \
        --task-definition "$TARGET" --query 'service.taskDefinition' --output text
    run aws ecs wait services-stable --region "$REGION" --cluster "$CLUSTER" --services "$SERVICE"
    capture image "000000000000.dkr.ecr.$REGION.amazonaws.com/$ENV_NAME-aidlc-auth:0123456789ab" \
        aws ecs describe-task-definition --region "$REGION" --task-definition "$TARGET" \
        --query 'taskDefinition.containerDefinitions[0].image' --output text
    say "done; to make CloudFormation agree (its next deploy would bring $current back):"
    echo "deploy/deploy.sh $ENV_NAME --image-tag ${image##*:}"
}

cancel_stack_update() {
    local stack
    stack=$(stack_name "$TARGET")
    [[ -f deploy/cloudformation/$TARGET.yaml ]] || die "no deploy/cloudformation/$TARGET.yaml"
    say "stack $stack: cancel the update in progress"
    run aws cloudformation cancel-update-stack --region "$REGION" --stack-name "$stack"
    run aws cloudformation wait stack-rollback-complete --region "$REGION" --stack-name "$stack"
    run aws cloudformation describe-stack-events --region "$REGION" --stack-name "$stack" \
        --max-items 20 --query 'StackEvents[].[Timestamp,LogicalResourceId,ResourceStatus,ResourceStatusReason]' \
        --output table
}

case $ACTION in
    service) rollback_service ;;
    stack) cancel_stack_update ;;
esac
