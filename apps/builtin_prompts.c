/* builtin_prompts.c: prompts written for the project (math word problems, code, chat),
 * the default workload of `vkdraft spec`. */
#include "builtin_prompts.h"

const builtin_prompt builtin_prompts[] = {
    {"math", "A baker makes 14 loaves of bread each hour for 6 hours, then sells them in bags "
             "of 4. How many full bags can she fill, and how many loaves are left over?"},
    {"math", "Tom has three times as many marbles as Ana. Together they have 48 marbles. How "
             "many marbles does each of them have? Explain each step."},
    {"math", "A train leaves at 9:40 and travels 210 km at 84 km/h. At what time does it "
             "arrive?"},
    {"math", "What is the sum of all even numbers from 2 to 100 inclusive?"},
    {"code", "Write a Python function that returns the n-th Fibonacci number iteratively, "
             "with a docstring and two doctest examples."},
    {"code", "Write a C function that reverses a singly linked list in place and returns the "
             "new head."},
    {"code", "Explain what this shell command does: find . -name '*.log' -mtime +7 -delete"},
    {"code", "Write a SQL query that returns the three customers with the highest total order "
             "value from tables customers(id, name) and orders(customer_id, amount)."},
    {"chat", "Give me three tips for keeping a small vegetable garden healthy in a dry summer."},
    {"chat", "Summarise the difference between a comet and an asteroid in two sentences."},
    {"chat", "Write a short, friendly message inviting a colleague to a Friday lunch."},
    {"chat", "What are the main causes of the seasons on Earth?"},
};

const size_t builtin_prompt_count = sizeof builtin_prompts / sizeof builtin_prompts[0];
