/* cmds.h: one entry point per vkdraft subcommand (apps/cmd_<name>.c). */
#ifndef VKD_CMDS_H
#define VKD_CMDS_H

int vkd_cmd_devices(int argc, char **argv);
int vkd_cmd_bench(int argc, char **argv);
int vkd_cmd_forward(int argc, char **argv);
int vkd_cmd_generate(int argc, char **argv);
int vkd_cmd_spec(int argc, char **argv);
int vkd_cmd_inspect(int argc, char **argv);
int vkd_cmd_tokenize(int argc, char **argv);
int vkd_cmd_diagnose(int argc, char **argv);
int vkd_cmd_probe(int argc, char **argv);
int vkd_cmd_power(int argc, char **argv);
int vkd_cmd_guide(int argc, char **argv);
int vkd_cmd_ttt(int argc, char **argv);
int vkd_cmd_exit_train(int argc, char **argv);
int vkd_cmd_exit_eval(int argc, char **argv);
int vkd_cmd_train_draft(int argc, char **argv);
int vkd_cmd_train_target(int argc, char **argv);
int vkd_cmd_merge(int argc, char **argv);

#endif
