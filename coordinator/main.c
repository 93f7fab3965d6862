#include <stdio.h>
int main(void) { puts("faceri"); return 0; }
